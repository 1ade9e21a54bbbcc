// Causal GQA attention against the float64 reference.
//
// Tolerance for out[r, h, c] = sum_j p_j v_jc (p = softmax of scores s_j over the T visible
// keys), derived from float32 error bounds:
//  * a score is a d-term dot product of pre-scaled queries (scale and product roundings
//    included): |ds_j| <= gamma_{d+2} * scale * sum_c |q_c k_jc| =: E (max over j);
//  * softmax weights then carry a relative error <= 2E (a shift common to all scores cancels),
//    plus the exp's own error and the per-tile rescaling (one rounding per tile, both in the
//    numerator and the denominator);
//  * numerator and denominator are T-term float32 sums: gamma_T each;
// so with weights summing to 1 (and tiles <= T): |out - ref| <= 2 (2E + e_exp + gamma_{2T}) max_j |v_jc|
// + u |ref| for the final division. This is tight enough that attending to one key too many or
// too few (an error of order max|v| / T) fails.
//
// A bf16 or int8 cache is checked the same way against the reference run on the values the
// cache stands for (widened / de-quantized), which the kernel must reproduce exactly before its
// float32 arithmetic; the conversion's own error is checked separately (KvQuantization).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "common/bf16.h"
#include "kernels/error_bounds.h"
#include "kernels/ops.h"
#include "kernels/random_values.h"

namespace swiftkv::kernels {
namespace {

using testing::gamma;
using testing::kExpRelativeError;
using testing::kUnitBF16;
using testing::kUnitF32;

using testing::random_values;

struct Case {
  int64_t rows, num_heads, num_kv_heads, head_dim, cache_offset;
  bool shuffle_positions = false;
  int64_t block_size = 0;  // > 0: the cache is paged into blocks of this many tokens, stored out of order
  KvDType dtype = KvDType::F32;  // bf16 and int8 caches are always paged (one block when block_size is 0)
};

// Copies a contiguous (tokens, stride) cache into blocks of block_size tokens placed in
// reverse order in one pool (the rest of which holds `filler`); returns each logical block's pointer.
template <typename T>
std::vector<const T*> page(const std::vector<T>& cache, int64_t tokens, int64_t stride, int64_t block_size,
                           std::vector<T>& pool, T filler) {
  const int64_t blocks = (tokens + block_size - 1) / block_size;
  pool.assign(static_cast<size_t>(blocks * block_size * stride), filler);
  std::vector<const T*> pointers;
  for (int64_t b = 0; b < blocks; ++b) {
    T* block = pool.data() + (blocks - 1 - b) * block_size * stride;
    const int64_t count = std::min(block_size, tokens - b * block_size);
    std::copy_n(cache.data() + b * block_size * stride, count * stride, block);
    pointers.push_back(block);
  }
  return pointers;
}

// One of K or V, (tokens, stride) with (nkv, d) used per token, as a cache of `dtype` stores it,
// and the float32 values it stands for (bf16 widened; int8 as float(q) * scale).
struct StoredCache {
  std::vector<float> values;  // what attention must see
  std::vector<uint16_t> bf16;
  std::vector<int8_t> int8;
  std::vector<float> scales;  // int8: (tokens, nkv)
};

StoredCache store(const std::vector<float>& x, int64_t tokens, int64_t stride, int64_t nkv, int64_t d,
                  KvDType dtype) {
  StoredCache cache;
  cache.values = x;
  if (dtype == KvDType::BF16) cache.bf16.resize(x.size());
  if (dtype == KvDType::INT8)
    cache.int8.resize(x.size()), cache.scales.resize(static_cast<size_t>(tokens * nkv));
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t h = 0; h < nkv; ++h) {
      const size_t at = static_cast<size_t>(t * stride + h * d);
      if (dtype == KvDType::BF16) {
        to_bf16(x.data() + at, d, cache.bf16.data() + at);
        for (size_t i = at; i < at + static_cast<size_t>(d); ++i)
          cache.values[i] = bf16_to_f32(cache.bf16[i]);
      } else if (dtype == KvDType::INT8) {
        const float scale = quantize_int8(x.data() + at, d, cache.int8.data() + at);
        cache.scales[static_cast<size_t>(t * nkv + h)] = scale;
        for (size_t i = at; i < at + static_cast<size_t>(d); ++i)
          cache.values[i] = static_cast<float>(cache.int8[i]) * scale;
      }
    }
  }
  return cache;
}

// The paged copies of one stored cache that a KvView points into.
struct PagedCache {
  std::vector<float> f32, scales;
  std::vector<uint16_t> bf16;
  std::vector<int8_t> int8;
  std::vector<const void*> blocks;
  std::vector<const float*> scale_blocks;

  PagedCache(const StoredCache& cache, int64_t tokens, int64_t stride, int64_t nkv, int64_t block_size,
             KvDType dtype) {
    auto untyped = [](const auto& pointers) {
      return std::vector<const void*>(pointers.begin(), pointers.end());
    };
    switch (dtype) {
      case KvDType::F32:
        blocks = untyped(page(cache.values, tokens, stride, block_size, f32, float(NAN)));
        break;
      case KvDType::BF16:
        blocks = untyped(page(cache.bf16, tokens, stride, block_size, bf16, uint16_t{0x7fc0}));  // NaN
        break;
      case KvDType::INT8:
        blocks = untyped(page(cache.int8, tokens, stride, block_size, int8, int8_t{-128}));
        scale_blocks = page(cache.scales, tokens, nkv, block_size, scales, float(NAN));
        break;
    }
  }
};

void check_attention(const Case& c) {
  SCOPED_TRACE("rows=" + std::to_string(c.rows) + " nq=" + std::to_string(c.num_heads) +
               " nkv=" + std::to_string(c.num_kv_heads) + " d=" + std::to_string(c.head_dim) +
               " offset=" + std::to_string(c.cache_offset) + (c.shuffle_positions ? " shuffled" : "") +
               " block_size=" + std::to_string(c.block_size) + " dtype=" +
               std::string(c.dtype == KvDType::F32    ? "f32"
                           : c.dtype == KvDType::BF16 ? "bf16"
                                                      : "int8"));
  const int64_t d = c.head_dim, tokens = c.cache_offset + c.rows;
  // Strides wider than the packed rows, as when q/k/v sit inside a fused buffer.
  const int64_t q_stride = c.num_heads * d + 3, kv_stride = c.num_kv_heads * d + 5,
                out_stride = c.num_heads * d + 7;
  // Scores of a few units, so softmax is neither flat nor one-hot.
  const auto q = random_values(static_cast<size_t>(c.rows * q_stride), 1, 1.5f);
  const StoredCache stored_key = store(random_values(static_cast<size_t>(tokens * kv_stride), 2, 1.5f),
                                       tokens, kv_stride, c.num_kv_heads, d, c.dtype);
  const StoredCache stored_value = store(random_values(static_cast<size_t>(tokens * kv_stride), 3), tokens,
                                         kv_stride, c.num_kv_heads, d, c.dtype);
  const std::vector<float>& key = stored_key.values;
  const std::vector<float>& value = stored_value.values;
  std::vector<int32_t> positions(static_cast<size_t>(c.rows));
  std::iota(positions.begin(), positions.end(), static_cast<int32_t>(c.cache_offset));
  if (c.shuffle_positions) std::shuffle(positions.begin(), positions.end(), std::mt19937(4));

  const AttentionShape shape{c.num_heads, c.num_kv_heads, d};
  std::vector<float> out(static_cast<size_t>(c.rows * out_stride), -12345.0f), ref(out.size(), -12345.0f);
  if (c.block_size > 0 || c.dtype != KvDType::F32) {
    const int64_t block_size = c.block_size > 0 ? c.block_size : tokens;
    const PagedCache paged_key(stored_key, tokens, kv_stride, c.num_kv_heads, block_size, c.dtype);
    const PagedCache paged_value(stored_value, tokens, kv_stride, c.num_kv_heads, block_size, c.dtype);
    attention(q.data(), c.rows, q_stride,
              KvView{paged_key.blocks.data(), paged_value.blocks.data(), block_size, kv_stride, c.dtype,
                     paged_key.scale_blocks.data(), paged_value.scale_blocks.data()},
              positions.data(), shape, out.data(), out_stride);
  } else {
    attention(q.data(), c.rows, q_stride, key.data(), value.data(), kv_stride, positions.data(), shape,
              out.data(), out_stride);
  }
  reference::attention(q.data(), c.rows, q_stride, key.data(), value.data(), kv_stride, positions.data(),
                       shape, ref.data(), out_stride);

  const int64_t group = c.num_heads / c.num_kv_heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  int failures = 0;
  for (int64_t r = 0; r < c.rows && failures < 10; ++r) {
    const int64_t visible = positions[r] + 1;
    for (int64_t h = 0; h < c.num_heads; ++h) {
      const int64_t kvh = h / group;
      double score_error = 0;
      for (int64_t t = 0; t < visible; ++t) {
        double s = 0;
        for (int64_t i = 0; i < d; ++i)
          s += std::fabs(static_cast<double>(q[r * q_stride + h * d + i]) * key[t * kv_stride + kvh * d + i]);
        score_error = std::max(score_error, gamma(d + 2) * scale * s);
      }
      const double weight_error = 2 * score_error + kExpRelativeError + gamma(2 * visible);
      for (int64_t i = 0; i < d; ++i) {
        double max_v = 0;
        for (int64_t t = 0; t < visible; ++t)
          max_v = std::max(max_v, std::fabs(double(value[t * kv_stride + kvh * d + i])));
        const size_t idx = static_cast<size_t>(r * out_stride + h * d + i);
        const double tol = 2 * weight_error * max_v + kUnitF32 * std::fabs(ref[idx]);
        const double err = std::fabs(static_cast<double>(out[idx]) - ref[idx]);
        if (!(err <= tol)) {
          ++failures;
          ADD_FAILURE() << "out[" << r << ", head " << h << ", " << i << "] = " << out[idx] << ", reference "
                        << ref[idx] << ", error " << err << " > " << tol;
        }
      }
    }
    for (int64_t pad = c.num_heads * d; pad < out_stride; ++pad)  // beyond the heads: untouched
      ASSERT_EQ(out[r * out_stride + pad], -12345.0f);
  }
}

TEST(Attention, GroupedQueryMatchesReference) {
  for (int64_t rows : {1, 7, 64, 300}) check_attention({rows, 8, 2, 64, 37});
}

TEST(Attention, MultiHeadMatchesReference) {
  for (int64_t rows : {1, 7, 64, 300}) check_attention({rows, 4, 4, 64, 100});
}

TEST(Attention, OddHeadDimsAndGroups) {
  check_attention({7, 8, 4, 8, 3});     // stories260K-like head_dim 8
  check_attention({5, 6, 2, 20, 50});   // head_dim not a multiple of any micro-tile
  check_attention({3, 32, 8, 128, 0});  // no earlier cache: prompt starts at position 0
  check_attention({33, 12, 1, 64, 7});  // one KV head for all (MQA), rows spill into a partial block
}

TEST(Attention, DecodeAgainstLongCache) {
  check_attention({1, 32, 8, 64, 4095});
  check_attention({2, 32, 8, 64, 1000});
}

TEST(Attention, PositionsInAnyOrder) {
  check_attention({64, 8, 2, 64, 40, true});
  check_attention({9, 4, 4, 16, 200, true});
}

TEST(Attention, PagedCacheMatchesReference) {
  for (int64_t block_size : {1, 16, 50, 128}) {
    check_attention({1, 8, 2, 64, 500, false, block_size});
    check_attention({64, 8, 2, 64, 37, false, block_size});
    check_attention({9, 4, 4, 16, 200, true, block_size});
  }
}

TEST(Attention, Bf16AndInt8CachesMatchTheReferenceOnTheirValues) {
  for (KvDType dtype : {KvDType::BF16, KvDType::INT8}) {
    check_attention({1, 8, 2, 64, 500, false, 16, dtype});  // decode over many blocks
    check_attention({64, 8, 2, 64, 37, false, 50, dtype});  // prefill, tiles cut by blocks
    check_attention({9, 4, 4, 16, 200, true, 1, dtype});    // one token per block
    check_attention({33, 12, 1, 20, 7, false, 0, dtype});   // head_dim not a multiple of 16, MQA
    check_attention({7, 8, 4, 8, 3, false, 128, dtype});    // head_dim 8 (stories260K)
  }
}

// The stored values' own error: bf16 rounds to nearest (relative 2^-8), int8 scales the row's
// largest magnitude to 127 and rounds to the nearest step (<= scale / 2).
TEST(KvQuantization, ErrorWithinTheFormatsBound) {
  const int64_t n = 200;
  for (uint32_t seed = 10; seed < 20; ++seed) {
    std::vector<float> x = random_values(static_cast<size_t>(n), seed, 3.0f);
    x[seed % n] *= 40;  // one outlier: int8 steps grow with it
    std::vector<uint16_t> bf16(static_cast<size_t>(n));
    std::vector<float> widened(static_cast<size_t>(n)), dequantized(static_cast<size_t>(n));
    std::vector<int8_t> int8(static_cast<size_t>(n));
    to_bf16(x.data(), n, bf16.data());
    from_bf16(bf16.data(), n, widened.data());
    const float scale = quantize_int8(x.data(), n, int8.data());
    dequantize_int8(int8.data(), n, scale, dequantized.data());
    float max_abs = 0;
    for (float v : x) max_abs = std::max(max_abs, std::fabs(v));
    EXPECT_FLOAT_EQ(scale, max_abs / 127);
    for (int64_t i = 0; i < n; ++i) {
      const double xi = x[static_cast<size_t>(i)];
      EXPECT_LE(std::fabs(widened[static_cast<size_t>(i)] - xi), kUnitBF16 * std::fabs(xi)) << i;
      EXPECT_EQ(widened[static_cast<size_t>(i)], bf16_to_f32(bf16[static_cast<size_t>(i)]));
      // Half a step, plus the float32 roundings of x / scale and q * scale (a few units of 2^-24).
      EXPECT_LE(std::fabs(dequantized[static_cast<size_t>(i)] - xi), scale * (0.5 + 256 * kUnitF32)) << i;
      EXPECT_EQ(dequantized[static_cast<size_t>(i)], float(int8[static_cast<size_t>(i)]) * scale);
    }
  }
  // An all-zero row reads back as zeros; a non-finite one as NaN, not as plausible numbers.
  std::vector<float> zeros(17, 0.0f), out(17, 1.0f);
  std::vector<int8_t> q(17);
  dequantize_int8(q.data(), 17, quantize_int8(zeros.data(), 17, q.data()), out.data());
  EXPECT_EQ(out, zeros);
  zeros[3] = INFINITY;
  EXPECT_TRUE(std::isnan(quantize_int8(zeros.data(), 17, q.data())));
}

TEST(Attention, InPlaceOverQueries) {
  const int64_t rows = 70, nq = 8, nkv = 2, d = 32, tokens = 90, stride = nq * d;
  const auto q = random_values(static_cast<size_t>(rows * stride), 5);
  const auto key = random_values(static_cast<size_t>(tokens * nkv * d), 6);
  const auto value = random_values(static_cast<size_t>(tokens * nkv * d), 7);
  std::vector<int32_t> positions(static_cast<size_t>(rows));
  std::iota(positions.begin(), positions.end(), static_cast<int32_t>(tokens - rows));
  const AttentionShape shape{nq, nkv, d};
  std::vector<float> separate(q.size()), in_place = q;
  attention(q.data(), rows, stride, key.data(), value.data(), nkv * d, positions.data(), shape,
            separate.data(), stride);
  attention(in_place.data(), rows, stride, key.data(), value.data(), nkv * d, positions.data(), shape,
            in_place.data(), stride);
  EXPECT_EQ(separate, in_place);
}

TEST(Attention, RejectsBadShapes) {
  float x = 0;
  const int32_t position = 0, negative = -1;
  EXPECT_ANY_THROW(attention(&x, 1, 1, &x, &x, 1, &position, AttentionShape{3, 2, 1}, &x, 1));
  EXPECT_ANY_THROW(attention(&x, 1, 1, &x, &x, 1, &negative, AttentionShape{1, 1, 1}, &x, 1));
  const void* block = &x;
  EXPECT_ANY_THROW(attention(&x, 1, 1, KvView{&block, &block, 1, 1, KvDType::INT8}, &position,
                             AttentionShape{1, 1, 1}, &x, 1));  // int8 without scales
}

}  // namespace
}  // namespace swiftkv::kernels
