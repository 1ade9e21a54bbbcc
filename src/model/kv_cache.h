#pragma once
// KV storage. A KvPool holds, for each physical cache (M early layers plus one per AcrossKV
// group; L when the teacher path runs), num_blocks blocks of block_size tokens, token-major
// (block_size, nkv, head_dim) in float32. A sequence owns a BlockTable: its i-th block holds
// positions [i * block_size, (i + 1) * block_size) in every cache. Sequences share a pool
// (serving) or own one (KvCache: generate, scoring).
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace swiftkv::model {

// Element type of the stored K/V. INT8 is symmetric with one float scale per token and KV head.
enum class KvDType { F32, BF16, INT8 };
const char* kv_dtype_name(KvDType dtype);
KvDType parse_kv_dtype(std::string_view name);  // "f32" | "bf16" | "int8"; throws swiftkv::Error otherwise

using BlockTable = std::vector<int32_t>;

class KvPool {
 public:
  KvPool(int64_t num_caches, int64_t num_blocks, int64_t block_size, int64_t num_kv_heads, int64_t head_dim)
      : num_caches_(num_caches),
        num_blocks_(num_blocks),
        block_size_(block_size),
        token_stride_(num_kv_heads * head_dim),
        floats_(static_cast<size_t>(num_caches * num_blocks * block_size * token_stride_)),
        // Not value-initialised: pages are touched (and cost memory) only as tokens arrive.
        keys_(new float[floats_]),
        values_(new float[floats_]) {}

  int64_t num_caches() const { return num_caches_; }
  int64_t num_blocks() const { return num_blocks_; }
  int64_t block_size() const { return block_size_; }
  int64_t token_stride() const { return token_stride_; }  // floats between consecutive tokens
  float* key_block(int64_t cache, int32_t block) { return keys_.get() + offset(cache, block); }
  float* value_block(int64_t cache, int32_t block) { return values_.get() + offset(cache, block); }
  // Where `position` of the sequence with `table` lives.
  float* key(int64_t cache, const BlockTable& table, int64_t position) {
    return key_block(cache, table[static_cast<size_t>(position / block_size_)]) +
           (position % block_size_) * token_stride_;
  }
  float* value(int64_t cache, const BlockTable& table, int64_t position) {
    return value_block(cache, table[static_cast<size_t>(position / block_size_)]) +
           (position % block_size_) * token_stride_;
  }
  size_t bytes() const { return 2 * floats_ * sizeof(float); }

 private:
  size_t offset(int64_t cache, int32_t block) const {
    return static_cast<size_t>((cache * num_blocks_ + block) * block_size_ * token_stride_);
  }
  int64_t num_caches_, num_blocks_, block_size_, token_stride_;
  size_t floats_;
  std::unique_ptr<float[]> keys_, values_;
};

// One sequence with a pool of its own: a single block of `capacity` tokens.
class KvCache {
 public:
  KvCache(int64_t num_caches, int64_t capacity, int64_t num_kv_heads, int64_t head_dim)
      : pool_(num_caches, 1, capacity, num_kv_heads, head_dim), table_{0} {}
  int64_t num_caches() const { return pool_.num_caches(); }
  int64_t capacity() const { return pool_.block_size(); }
  KvPool& pool() { return pool_; }
  const BlockTable& table() const { return table_; }
  size_t bytes() const { return pool_.bytes(); }

 private:
  KvPool pool_;
  BlockTable table_;
};

}  // namespace swiftkv::model
