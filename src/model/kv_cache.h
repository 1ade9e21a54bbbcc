#pragma once
// KV storage. A KvPool holds, for each physical cache (M early layers plus one per AcrossKV
// group; L when the teacher path runs), num_blocks blocks of block_size tokens, token-major
// (block_size, nkv, head_dim), in float32, bf16 or int8. A sequence owns a BlockTable: its
// i-th block holds positions [i * block_size, (i + 1) * block_size) in every cache. Sequences
// share a pool (serving) or own one (KvCache: generate, scoring).
//
// INT8 is symmetric with one float scale per (token, KV head), for K and for V separately:
// finer than per (layer, head), needs no calibration, and fits the cache's write-once tokens
// (a token's scale is fixed when it is written). Scales live beside the blocks,
// (block_size, nkv) floats per block, and count in bytes().
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/ops.h"

namespace swiftkv::model {

using kernels::KvDType;
const char* kv_dtype_name(KvDType dtype);
KvDType parse_kv_dtype(std::string_view name);  // "f32" | "bf16" | "int8"; throws swiftkv::Error otherwise

using BlockTable = std::vector<int32_t>;

// Where the kernel's view of one sequence's blocks points (reused between calls).
struct KvBlockPointers {
  std::vector<const void*> keys, values;
  std::vector<const float*> key_scales, value_scales;
};

class KvPool {
 public:
  KvPool(int64_t num_caches, int64_t num_blocks, int64_t block_size, int64_t num_kv_heads, int64_t head_dim,
         KvDType dtype = KvDType::F32);

  int64_t num_caches() const { return num_caches_; }
  int64_t num_blocks() const { return num_blocks_; }
  int64_t block_size() const { return block_size_; }
  int64_t num_kv_heads() const { return num_kv_heads_; }
  int64_t head_dim() const { return head_dim_; }
  KvDType dtype() const { return dtype_; }

  // Stores K and V of `position` of the sequence with `table` in cache `cache`: (nkv, d) floats
  // each, converted to the pool's dtype.
  void write(int64_t cache, const BlockTable& table, int64_t position, const float* key, const float* value);
  // Reads them back as float32, as attention sees them.
  void read(int64_t cache, const BlockTable& table, int64_t position, float* key, float* value) const;
  // The kernel's view of cache `cache` over the blocks of `table`; points into `pointers`.
  kernels::KvView view(int64_t cache, const BlockTable& table, KvBlockPointers& pointers) const;

  // Bytes one token takes in one cache (K and V, scales included).
  static int64_t bytes_per_token(int64_t num_kv_heads, int64_t head_dim, KvDType dtype);
  size_t bytes() const;

 private:
  // K or V of every cache: elements, and for INT8 one scale per (token, KV head).
  struct Storage {
    std::unique_ptr<std::byte[]> elements;
    std::unique_ptr<float[]> scales;
  };
  size_t slot(int64_t cache, const BlockTable& table, int64_t position) const;  // token index in the pool
  void write_one(Storage& storage, size_t token, const float* x);
  void read_one(const Storage& storage, size_t token, float* x) const;

  int64_t num_caches_, num_blocks_, block_size_, num_kv_heads_, head_dim_;
  KvDType dtype_;
  size_t element_size_, tokens_;  // tokens_: every cache's every block's tokens
  Storage keys_, values_;
};

// One sequence with a pool of its own: a single block of `capacity` tokens.
class KvCache {
 public:
  KvCache(int64_t num_caches, int64_t capacity, int64_t num_kv_heads, int64_t head_dim,
          KvDType dtype = KvDType::F32)
      : pool_(num_caches, 1, capacity, num_kv_heads, head_dim, dtype), table_{0} {}
  int64_t num_caches() const { return pool_.num_caches(); }
  int64_t capacity() const { return pool_.block_size(); }
  KvPool& pool() { return pool_; }
  const KvPool& pool() const { return pool_; }
  const BlockTable& table() const { return table_; }
  size_t bytes() const { return pool_.bytes(); }

 private:
  KvPool pool_;
  BlockTable table_;
};

}  // namespace swiftkv::model
