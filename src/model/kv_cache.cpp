#include "model/kv_cache.h"

#include <cstring>

#include "common/error.h"

namespace swiftkv::model {

namespace {

size_t element_size(KvDType dtype) {
  switch (dtype) {
    case KvDType::F32:
      return sizeof(float);
    case KvDType::BF16:
      return sizeof(uint16_t);
    case KvDType::INT8:
      return sizeof(int8_t);
  }
  throw Error("unknown KV cache dtype " + std::to_string(static_cast<int>(dtype)));
}

}  // namespace

const char* kv_dtype_name(KvDType dtype) {
  switch (dtype) {
    case KvDType::F32:
      return "f32";
    case KvDType::BF16:
      return "bf16";
    case KvDType::INT8:
      return "int8";
  }
  return "?";
}

KvDType parse_kv_dtype(std::string_view name) {
  for (KvDType dtype : {KvDType::F32, KvDType::BF16, KvDType::INT8})
    if (name == kv_dtype_name(dtype)) return dtype;
  throw Error("unknown KV cache dtype '" + std::string(name) + "' (expected f32, bf16 or int8)");
}

KvPool::KvPool(int64_t num_caches, int64_t num_blocks, int64_t block_size, int64_t num_kv_heads,
               int64_t head_dim, KvDType dtype)
    : num_caches_(num_caches),
      num_blocks_(num_blocks),
      block_size_(block_size),
      num_kv_heads_(num_kv_heads),
      head_dim_(head_dim),
      dtype_(dtype),
      element_size_(element_size(dtype)) {
  if (num_caches <= 0 || num_blocks <= 0 || block_size <= 0 || num_kv_heads <= 0 || head_dim <= 0)
    throw Error("KV pool: caches (" + std::to_string(num_caches) + "), blocks (" +
                std::to_string(num_blocks) + "), block size (" + std::to_string(block_size) +
                "), KV heads and head_dim must be positive");
  tokens_ = static_cast<size_t>(num_caches * num_blocks * block_size);
  // Not value-initialised: pages are touched (and cost memory) only as tokens arrive.
  const size_t element_bytes = tokens_ * static_cast<size_t>(num_kv_heads * head_dim) * element_size_;
  for (Storage* storage : {&keys_, &values_}) {
    storage->elements.reset(new std::byte[element_bytes]);
    if (dtype == KvDType::INT8) storage->scales.reset(new float[tokens_ * static_cast<size_t>(num_kv_heads)]);
  }
}

int64_t KvPool::bytes_per_token(int64_t num_kv_heads, int64_t head_dim, KvDType dtype) {
  const int64_t scale_bytes = dtype == KvDType::INT8 ? static_cast<int64_t>(sizeof(float)) : 0;
  return 2 * num_kv_heads * (head_dim * static_cast<int64_t>(element_size(dtype)) + scale_bytes);
}

size_t KvPool::bytes() const {
  return tokens_ * static_cast<size_t>(bytes_per_token(num_kv_heads_, head_dim_, dtype_));
}

size_t KvPool::slot(int64_t cache, const BlockTable& table, int64_t position) const {
  const int64_t index = position / block_size_;
  if (cache < 0 || cache >= num_caches_ || position < 0 || index >= static_cast<int64_t>(table.size()))
    throw Error("KV pool: cache " + std::to_string(cache) + " position " + std::to_string(position) +
                " is outside the pool or the sequence's " + std::to_string(table.size()) + " blocks");
  const int32_t block = table[static_cast<size_t>(index)];
  if (block < 0 || block >= num_blocks_)
    throw Error("KV pool: block " + std::to_string(block) + " is outside the pool's " +
                std::to_string(num_blocks_) + " blocks");
  return static_cast<size_t>((cache * num_blocks_ + block) * block_size_ + position % block_size_);
}

void KvPool::write_one(Storage& storage, size_t token, const float* x) {
  const int64_t width = num_kv_heads_ * head_dim_;
  std::byte* out = storage.elements.get() + token * static_cast<size_t>(width) * element_size_;
  switch (dtype_) {
    case KvDType::F32:
      std::memcpy(out, x, static_cast<size_t>(width) * sizeof(float));
      break;
    case KvDType::BF16:
      kernels::to_bf16(x, width, reinterpret_cast<uint16_t*>(out));
      break;
    case KvDType::INT8:
      for (int64_t h = 0; h < num_kv_heads_; ++h)
        storage.scales[token * static_cast<size_t>(num_kv_heads_) + static_cast<size_t>(h)] =
            kernels::quantize_int8(x + h * head_dim_, head_dim_,
                                   reinterpret_cast<int8_t*>(out) + h * head_dim_);
      break;
  }
}

void KvPool::read_one(const Storage& storage, size_t token, float* x) const {
  const int64_t width = num_kv_heads_ * head_dim_;
  const std::byte* in = storage.elements.get() + token * static_cast<size_t>(width) * element_size_;
  switch (dtype_) {
    case KvDType::F32:
      std::memcpy(x, in, static_cast<size_t>(width) * sizeof(float));
      break;
    case KvDType::BF16:
      kernels::from_bf16(reinterpret_cast<const uint16_t*>(in), width, x);
      break;
    case KvDType::INT8:
      for (int64_t h = 0; h < num_kv_heads_; ++h)
        kernels::dequantize_int8(
            reinterpret_cast<const int8_t*>(in) + h * head_dim_, head_dim_,
            storage.scales[token * static_cast<size_t>(num_kv_heads_) + static_cast<size_t>(h)],
            x + h * head_dim_);
      break;
  }
}

void KvPool::write(int64_t cache, const BlockTable& table, int64_t position, const float* key,
                   const float* value) {
  const size_t token = slot(cache, table, position);
  write_one(keys_, token, key);
  write_one(values_, token, value);
}

void KvPool::read(int64_t cache, const BlockTable& table, int64_t position, float* key, float* value) const {
  const size_t token = slot(cache, table, position);
  read_one(keys_, token, key);
  read_one(values_, token, value);
}

kernels::KvView KvPool::view(int64_t cache, const BlockTable& table, KvBlockPointers& pointers) const {
  pointers.keys.clear();
  pointers.values.clear();
  pointers.key_scales.clear();
  pointers.value_scales.clear();
  for (size_t i = 0; i < table.size(); ++i) {
    // The first token of each block.
    const size_t token = slot(cache, table, static_cast<int64_t>(i) * block_size_);
    const size_t offset = token * static_cast<size_t>(num_kv_heads_ * head_dim_) * element_size_;
    pointers.keys.push_back(keys_.elements.get() + offset);
    pointers.values.push_back(values_.elements.get() + offset);
    if (dtype_ == KvDType::INT8) {
      pointers.key_scales.push_back(keys_.scales.get() + token * static_cast<size_t>(num_kv_heads_));
      pointers.value_scales.push_back(values_.scales.get() + token * static_cast<size_t>(num_kv_heads_));
    }
  }
  return {
      pointers.keys.data(),       pointers.values.data(),      block_size_, num_kv_heads_ * head_dim_, dtype_,
      pointers.key_scales.data(), pointers.value_scales.data()};
}

}  // namespace swiftkv::model
