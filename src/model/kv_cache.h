#pragma once
// The KV cache of one sequence: one physical cache per KV-producing layer (M early layers
// plus one per AcrossKV group; L when the teacher path runs), each token-major
// (tokens, nkv, head_dim) in float32. A paged, shared cache replaces this for serving.
#include <cstdint>
#include <vector>

#include "io/model_config.h"

namespace swiftkv::model {

class KvCache {
 public:
  KvCache(int64_t num_caches, int64_t capacity, int64_t num_kv_heads, int64_t head_dim)
      : num_caches_(num_caches),
        capacity_(capacity),
        token_stride_(num_kv_heads * head_dim),
        keys_(static_cast<size_t>(num_caches * capacity * token_stride_)),
        values_(keys_.size()) {}

  int64_t num_caches() const { return num_caches_; }
  int64_t capacity() const { return capacity_; }
  int64_t token_stride() const { return token_stride_; }  // floats between consecutive tokens
  float* key(int64_t cache, int64_t position) { return keys_.data() + offset(cache, position); }
  float* value(int64_t cache, int64_t position) { return values_.data() + offset(cache, position); }
  size_t bytes() const { return (keys_.size() + values_.size()) * sizeof(float); }

 private:
  size_t offset(int64_t cache, int64_t position) const {
    return static_cast<size_t>((cache * capacity_ + position) * token_stride_);
  }
  int64_t num_caches_, capacity_, token_stride_;
  std::vector<float> keys_, values_;
};

}  // namespace swiftkv::model
