#pragma once
// Element-wise and attention kernels on float32 activations. Each has a plain scalar
// reference (namespace reference) used by the tests.
#include <cstdint>
#include <vector>

#include "io/model_config.h"

namespace swiftkv::kernels {

// (rows, H) -> (rows, H): out = x / sqrt(mean(x^2) + eps) * weight. out may alias x.
void rmsnorm(const float* x, const float* weight, int64_t rows, int64_t hidden, float eps, float* out);

// out = silu(gate) * up, element-wise over n values. out may alias gate.
void swiglu(const float* gate, const float* up, int64_t n, float* out);

// cos/sin tables for the Hugging Face "rotate_half" RoPE layout, with linear and llama3
// frequency scaling. Row p holds head_dim/2 cos and sin values for position p.
class RopeTable {
 public:
  RopeTable(int64_t head_dim, double theta, const io::RopeScaling& scaling, int64_t max_positions);
  int64_t head_dim() const { return head_dim_; }
  int64_t max_positions() const { return max_positions_; }
  const float* cos(int64_t position) const { return cos_.data() + position * (head_dim_ / 2); }
  const float* sin(int64_t position) const { return sin_.data() + position * (head_dim_ / 2); }
  // The inverse frequencies after scaling (head_dim/2 values), for references.
  const std::vector<double>& inv_freq() const { return inv_freq_; }

 private:
  int64_t head_dim_, max_positions_;
  std::vector<double> inv_freq_;
  std::vector<float> cos_, sin_;
};

// In place on x: (rows, heads, head_dim) with row r at position positions[r]; x rows are
// `row_stride` floats apart (heads*head_dim when packed). HF layout: pairs (i, i + d/2).
void apply_rope(float* x, int64_t rows, int64_t row_stride, int64_t heads, const int32_t* positions,
                const RopeTable& table);

// Element type of a stored K/V cache. INT8 is symmetric with one float scale per (token, KV head).
enum class KvDType { F32, BF16, INT8 };

// Storing one token's K or V: n floats -> bf16 (round to nearest even), or -> int8 with one
// scale: scale = max|x| / 127, q = round(x / scale), so |x - q * scale| <= scale / 2. Returns the
// scale (0 when every x is 0).
void to_bf16(const float* x, int64_t n, uint16_t* out);
float quantize_int8(const float* x, int64_t n, int8_t* out);
// And back, exactly as attention reads them: bf16 widened; int8 as float(q) * scale.
void from_bf16(const uint16_t* x, int64_t n, float* out);
void dequantize_int8(const int8_t* x, int64_t n, float scale, float* out);

// Causal grouped-query attention of `rows` query tokens against one sequence's KV cache.
// q: (rows, nq, d), rows `q_stride` floats apart. The cache is paged: block b holds tokens
// [b * block_size, (b + 1) * block_size), token-major (block_size, nkv, d) with tokens
// `token_stride` elements apart, elements of type `dtype` (float, bf16_t or int8_t). INT8 blocks
// come with scales: key_scales[b][t * nkv + h] is the scale of KV head h of the block's token t
// (likewise value_scales). bf16 and int8 tiles are widened to float32 as they are read.
// Query row r sits at position positions[r] and sees cache tokens
// 0..positions[r] inclusive (the cache must already hold them). Query head h reads KV head
// h / (nq / nkv). Softmax scale 1/sqrt(d). out: (rows, nq * d), rows `out_stride` floats apart;
// it may alias q when the strides are equal.
struct AttentionShape {
  int64_t num_heads, num_kv_heads, head_dim;
};
struct KvView {
  const void* const* key_blocks;
  const void* const* value_blocks;
  int64_t block_size;
  int64_t token_stride;
  KvDType dtype = KvDType::F32;
  const float* const* key_scales = nullptr;  // INT8 only
  const float* const* value_scales = nullptr;
};
void attention(const float* q, int64_t rows, int64_t q_stride, const KvView& kv, const int32_t* positions,
               const AttentionShape& shape, float* out, int64_t out_stride);
// The same over one contiguous cache (token t at key + t * kv_stride).
void attention(const float* q, int64_t rows, int64_t q_stride, const float* key, const float* value,
               int64_t kv_stride, const int32_t* positions, const AttentionShape& shape, float* out,
               int64_t out_stride);

namespace reference {
void rmsnorm(const float* x, const float* weight, int64_t rows, int64_t hidden, float eps, float* out);
void swiglu(const float* gate, const float* up, int64_t n, float* out);
void apply_rope(float* x, int64_t rows, int64_t row_stride, int64_t heads, int64_t head_dim,
                const int32_t* positions, const std::vector<double>& inv_freq);
void attention(const float* q, int64_t rows, int64_t q_stride, const float* key, const float* value,
               int64_t kv_stride, const int32_t* positions, const AttentionShape& shape, float* out,
               int64_t out_stride);
}  // namespace reference

}  // namespace swiftkv::kernels
