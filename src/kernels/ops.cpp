// Element-wise kernels (RMSNorm, SwiGLU, RoPE) and their scalar references. Attention lives
// in attention.cpp.
#include "kernels/ops.h"

#include <omp.h>

#include <cmath>
#include <numbers>
#include <string>

#include "common/error.h"
#include "kernels/simd.h"

namespace swiftkv::kernels {

namespace {
// Below this many values a parallel region costs more than it saves (decode-sized rows).
constexpr int64_t kParallelThreshold = 1 << 15;
}  // namespace

// (rows, H) -> (rows, H)
void rmsnorm(const float* x, const float* weight, int64_t rows, int64_t hidden, float eps, float* out) {
#pragma omp parallel for schedule(static) if (rows * hidden >= kParallelThreshold)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * hidden;
    float* yr = out + r * hidden;
    float sum_squares = 0.0f;
#pragma omp simd reduction(+ : sum_squares)
    for (int64_t i = 0; i < hidden; ++i) sum_squares += xr[i] * xr[i];
    const float inv_rms = 1.0f / std::sqrt(sum_squares / static_cast<float>(hidden) + eps);
#pragma omp simd
    for (int64_t i = 0; i < hidden; ++i) yr[i] = xr[i] * inv_rms * weight[i];
  }
}

// (n,), (n,) -> (n,)
void swiglu(const float* gate, const float* up, int64_t n, float* out) {
  using namespace simd;
  const int64_t vectors = n / kLanes;
#pragma omp parallel for schedule(static) if (n >= kParallelThreshold)
  for (int64_t v = 0; v < vectors; ++v) {
    const int64_t i = v * kLanes;
    v16f g = load(gate + i);
    store(out + i, g / (1.0f + simd::exp(-g)) * load(up + i));
  }
  for (int64_t i = vectors * kLanes; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

RopeTable::RopeTable(int64_t head_dim, double theta, const io::RopeScaling& scaling, int64_t max_positions)
    : head_dim_(head_dim), max_positions_(max_positions) {
  if (head_dim <= 0 || head_dim % 2 != 0)
    throw Error("RoPE needs an even head_dim, got " + std::to_string(head_dim));
  if (max_positions <= 0) throw Error("RoPE needs max_positions > 0, got " + std::to_string(max_positions));
  if (theta <= 0) throw Error("rope_theta must be positive, got " + std::to_string(theta));
  const int64_t half = head_dim / 2;
  inv_freq_.resize(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i)
    inv_freq_[i] = std::pow(theta, -static_cast<double>(2 * i) / static_cast<double>(head_dim));

  if (scaling.type == "linear") {
    if (scaling.factor <= 0) throw Error("rope_scaling.factor must be positive");
    for (double& f : inv_freq_) f /= scaling.factor;
  } else if (scaling.type == "llama3") {
    // As transformers' _compute_llama3_parameters: long wavelengths are slowed by `factor`,
    // short ones kept, the band in between interpolated.
    if (scaling.factor <= 0 || scaling.low_freq_factor <= 0 || scaling.high_freq_factor <= 0 ||
        scaling.high_freq_factor == scaling.low_freq_factor || scaling.original_max_position_embeddings <= 0)
      throw Error(
          "invalid llama3 rope_scaling: factor, low/high_freq_factor and "
          "original_max_position_embeddings must be positive and low != high");
    const double original = static_cast<double>(scaling.original_max_position_embeddings);
    const double low_freq_wavelen = original / scaling.low_freq_factor;
    const double high_freq_wavelen = original / scaling.high_freq_factor;
    for (double& f : inv_freq_) {
      const double wavelen = 2.0 * std::numbers::pi / f;
      if (wavelen > low_freq_wavelen) {
        f = f / scaling.factor;
      } else if (wavelen >= high_freq_wavelen) {
        const double smooth = (original / wavelen - scaling.low_freq_factor) /
                              (scaling.high_freq_factor - scaling.low_freq_factor);
        f = (1.0 - smooth) * f / scaling.factor + smooth * f;
      }
    }
  } else if (scaling.type != "none" && !scaling.type.empty() && scaling.type != "default") {
    throw Error("unsupported rope_scaling type \"" + scaling.type + "\" (supported: none, linear, llama3)");
  }

  cos_.resize(static_cast<size_t>(max_positions * half));
  sin_.resize(static_cast<size_t>(max_positions * half));
#pragma omp parallel for schedule(static) if (max_positions * half >= kParallelThreshold)
  for (int64_t p = 0; p < max_positions; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      const double angle = static_cast<double>(p) * inv_freq_[i];
      cos_[p * half + i] = static_cast<float>(std::cos(angle));
      sin_[p * half + i] = static_cast<float>(std::sin(angle));
    }
  }
}

// In place: (rows, heads, d), pairs (i, i + d/2) rotated by position * inv_freq[i].
void apply_rope(float* x, int64_t rows, int64_t row_stride, int64_t heads, const int32_t* positions,
                const RopeTable& table) {
  const int64_t half = table.head_dim() / 2;
  for (int64_t r = 0; r < rows; ++r)
    if (positions[r] < 0 || positions[r] >= table.max_positions())
      throw Error("RoPE position " + std::to_string(positions[r]) + " is outside the table (max_positions " +
                  std::to_string(table.max_positions()) + ")");
#pragma omp parallel for schedule(static) if (rows * heads * half * 2 >= kParallelThreshold)
  for (int64_t r = 0; r < rows; ++r) {
    const float* cos = table.cos(positions[r]);
    const float* sin = table.sin(positions[r]);
    for (int64_t h = 0; h < heads; ++h) {
      float* lo = x + r * row_stride + h * 2 * half;
      float* hi = lo + half;
#pragma omp simd
      for (int64_t i = 0; i < half; ++i) {
        const float a = lo[i], b = hi[i];
        lo[i] = a * cos[i] - b * sin[i];
        hi[i] = b * cos[i] + a * sin[i];
      }
    }
  }
}

namespace reference {

void rmsnorm(const float* x, const float* weight, int64_t rows, int64_t hidden, float eps, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    double sum_squares = 0;
    for (int64_t i = 0; i < hidden; ++i)
      sum_squares += static_cast<double>(x[r * hidden + i]) * x[r * hidden + i];
    const double inv_rms = 1.0 / std::sqrt(sum_squares / static_cast<double>(hidden) + eps);
    for (int64_t i = 0; i < hidden; ++i)
      out[r * hidden + i] = static_cast<float>(x[r * hidden + i] * inv_rms * weight[i]);
  }
}

void swiglu(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i];
    out[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up[i]);
  }
}

void apply_rope(float* x, int64_t rows, int64_t row_stride, int64_t heads, int64_t head_dim,
                const int32_t* positions, const std::vector<double>& inv_freq) {
  const int64_t half = head_dim / 2;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t h = 0; h < heads; ++h) {
      float* v = x + r * row_stride + h * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const double angle = static_cast<double>(positions[r]) * inv_freq[i];
        const double a = v[i], b = v[i + half];
        v[i] = static_cast<float>(a * std::cos(angle) - b * std::sin(angle));
        v[i + half] = static_cast<float>(b * std::cos(angle) + a * std::sin(angle));
      }
    }
  }
}

void attention(const float* q, int64_t rows, int64_t q_stride, const float* key, const float* value,
               int64_t kv_stride, const int32_t* positions, const AttentionShape& shape, float* out,
               int64_t out_stride) {
  const int64_t d = shape.head_dim, group = shape.num_heads / shape.num_kv_heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  std::vector<double> scores, acc(static_cast<size_t>(d));
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t keys = static_cast<int64_t>(positions[r]) + 1;
    scores.assign(static_cast<size_t>(keys), 0.0);
    for (int64_t h = 0; h < shape.num_heads; ++h) {
      const int64_t kv_head = h / group;
      const float* qh = q + r * q_stride + h * d;
      double max_score = -INFINITY;
      for (int64_t t = 0; t < keys; ++t) {
        const float* k = key + t * kv_stride + kv_head * d;
        double dot = 0;
        for (int64_t c = 0; c < d; ++c) dot += static_cast<double>(qh[c]) * k[c];
        scores[t] = dot * scale;
        max_score = std::max(max_score, scores[t]);
      }
      double sum = 0;
      for (int64_t t = 0; t < keys; ++t) sum += scores[t] = std::exp(scores[t] - max_score);
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t t = 0; t < keys; ++t) {
        const float* v = value + t * kv_stride + kv_head * d;
        for (int64_t c = 0; c < d; ++c) acc[c] += scores[t] * v[c];
      }
      for (int64_t c = 0; c < d; ++c) out[r * out_stride + h * d + c] = static_cast<float>(acc[c] / sum);
    }
  }
}

}  // namespace reference

}  // namespace swiftkv::kernels
