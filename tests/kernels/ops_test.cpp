// RMSNorm, SwiGLU and RoPE against float64 references; tolerances from float32 error bounds
// (see error_bounds.h).
#include "kernels/ops.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <numbers>
#include <random>
#include <vector>

#include "kernels/error_bounds.h"
#include "kernels/random_values.h"
#include "kernels/simd.h"

namespace swiftkv::kernels {
namespace {

using testing::gamma;
using testing::kExpRelativeError;
using testing::kUnitF32;

using testing::random_values;

// The vectorised exp behind softmax and SiLU, against float64 exp over its whole finite
// range; the bound is the one the other tolerances assume.
TEST(SimdExp, RelativeErrorWithinDocumentedBound) {
  double worst = 0;
  for (double x = -86.99; x <= 87.99; x += 0.000731) {
    float lanes[simd::kLanes];
    for (int l = 0; l < simd::kLanes; ++l) lanes[l] = static_cast<float>(x + l * 1e-5);
    float result[simd::kLanes];
    simd::store(result, simd::exp(simd::load(lanes)));
    for (int l = 0; l < simd::kLanes; ++l) {
      const double exact = std::exp(static_cast<double>(lanes[l]));
      worst = std::max(worst, std::fabs(result[l] - exact) / exact);
    }
  }
  EXPECT_LE(worst, kExpRelativeError);
  float special[simd::kLanes] = {-INFINITY, INFINITY, NAN, -1000.0f, 1000.0f, 0.0f};
  float result[simd::kLanes];
  simd::store(result, simd::exp(simd::load(special)));
  EXPECT_EQ(result[0], 0.0f);
  EXPECT_EQ(result[1], INFINITY);
  EXPECT_TRUE(std::isnan(result[2]));
  EXPECT_EQ(result[3], 0.0f);
  EXPECT_EQ(result[4], INFINITY);
  EXPECT_EQ(result[5], 1.0f);
  std::printf("simd::exp worst relative error %.3g (%.2f units of roundoff)\n", worst, worst / kUnitF32);
}

TEST(RmsNorm, MatchesReferenceAndWorksInPlace) {
  // The mean of squares sums H float32 products: relative error gamma_H, halved by the
  // square root; the divide, +eps, sqrt and reciprocal add <= 4 u, the two products 2 u.
  for (int64_t hidden : {1, 15, 64, 2048, 2053}) {
    const int64_t rows = 9;
    const auto x = random_values(static_cast<size_t>(rows * hidden), 1, 3.0f);
    const auto weight = random_values(static_cast<size_t>(hidden), 2);
    std::vector<float> out(x.size()), ref(x.size()), in_place = x;
    rmsnorm(x.data(), weight.data(), rows, hidden, 1e-5f, out.data());
    rmsnorm(in_place.data(), weight.data(), rows, hidden, 1e-5f, in_place.data());
    reference::rmsnorm(x.data(), weight.data(), rows, hidden, 1e-5f, ref.data());
    const double relative = gamma(hidden) / 2 + 7 * kUnitF32;
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_LE(std::fabs(out[i] - ref[i]), relative * std::fabs(ref[i]) + FLT_MIN)
          << "H=" << hidden << " i=" << i;
      ASSERT_EQ(out[i], in_place[i]);
    }
  }
}

TEST(SwiGlu, MatchesReferenceIncludingLargeMagnitudes) {
  // silu(g) = g / (1 + e^-g): the exp's relative error reaches silu damped by
  // e^-g / (1 + e^-g) <= 1; the add, divide and product add 3 u. Results below FLT_MIN
  // may flush to zero, hence the absolute FLT_MIN.
  for (int64_t n : {1, 16, 37, 100000}) {
    auto gate = random_values(static_cast<size_t>(n), 3, 4.0f);
    const auto up = random_values(static_cast<size_t>(n), 4);
    if (n >= 16) gate[0] = -100.0f, gate[1] = 100.0f, gate[2] = 0.0f, gate[3] = -87.5f, gate[4] = 88.5f;
    std::vector<float> out(gate.size()), ref(gate.size()), in_place = gate;
    swiglu(gate.data(), up.data(), n, out.data());
    swiglu(in_place.data(), up.data(), n, in_place.data());
    reference::swiglu(gate.data(), up.data(), n, ref.data());
    for (size_t i = 0; i < gate.size(); ++i) {
      ASSERT_LE(std::fabs(out[i] - ref[i]), (kExpRelativeError + 4 * kUnitF32) * std::fabs(ref[i]) + FLT_MIN)
          << "n=" << n << " gate=" << gate[i];
      ASSERT_EQ(out[i], in_place[i]);
    }
  }
}

// inv_freq written independently of the kernel, in the shape of transformers'
// _compute_default_rope_parameters / _compute_linear_scaling / _compute_llama3_parameters.
std::vector<double> expected_inv_freq(int64_t d, double theta, const io::RopeScaling& s) {
  std::vector<double> inv(static_cast<size_t>(d / 2));
  for (int64_t i = 0; i < d / 2; ++i) inv[i] = 1.0 / std::pow(theta, static_cast<double>(2 * i) / d);
  if (s.type == "linear")
    for (auto& f : inv) f = f / s.factor;
  if (s.type == "llama3") {
    const double old_len = static_cast<double>(s.original_max_position_embeddings);
    const double low_wavelen = old_len / s.low_freq_factor, high_wavelen = old_len / s.high_freq_factor;
    for (auto& f : inv) {
      const double wavelen = 2 * std::numbers::pi / f;
      const double llama = wavelen > low_wavelen ? f / s.factor : f;
      const double smooth =
          (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      const double smoothed = (1 - smooth) * llama / s.factor + smooth * llama;
      const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
      f = medium ? smoothed : llama;
    }
  }
  return inv;
}

void check_rope(int64_t d, double theta, const io::RopeScaling& scaling) {
  SCOPED_TRACE("d=" + std::to_string(d) + " scaling=" + scaling.type);
  const int64_t max_positions = 20000, rows = 50, heads = 3, row_stride = heads * d + 5;
  RopeTable table(d, theta, scaling, max_positions);
  const auto expected = expected_inv_freq(d, theta, scaling);
  ASSERT_EQ(table.inv_freq().size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i)
    EXPECT_NEAR(table.inv_freq()[i], expected[i], 8 * DBL_EPSILON * expected[i]) << "i=" << i;

  std::mt19937 rng(7);
  std::vector<int32_t> positions(rows);
  for (auto& p : positions) p = static_cast<int32_t>(rng() % max_positions);
  positions[0] = 0, positions[1] = max_positions - 1;
  auto x = random_values(static_cast<size_t>(rows * row_stride), 8);
  auto ref = x;
  const auto original = x;
  apply_rope(x.data(), rows, row_stride, heads, positions.data(), table);
  reference::apply_rope(ref.data(), rows, row_stride, heads, d, positions.data(), expected);
  // a' = a cos - b sin with cos, sin rounded to float (u each), two products and a
  // difference (3 u): |err| <= 4 u (|a| + |b|), plus the angle's float64 error (negligible).
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t i = 0; i < d / 2; ++i) {
        const int64_t lo = r * row_stride + h * d + i, hi = lo + d / 2;
        const double tol = 4 * kUnitF32 * (std::fabs(original[lo]) + std::fabs(original[hi]));
        ASSERT_LE(std::fabs(x[lo] - ref[lo]), tol) << "row " << r << " head " << h << " i " << i;
        ASSERT_LE(std::fabs(x[hi] - ref[hi]), tol) << "row " << r << " head " << h << " i " << i;
      }
    }
    for (int64_t pad = heads * d; pad < row_stride; ++pad)  // outside the heads: untouched
      ASSERT_EQ(x[r * row_stride + pad], original[r * row_stride + pad]);
  }
}

TEST(Rope, PlainMatchesReference) {
  check_rope(64, 10000.0, io::RopeScaling{});
  check_rope(8, 10000.0, io::RopeScaling{});
}

TEST(Rope, LinearScalingMatchesReference) {
  io::RopeScaling s;
  s.type = "linear";
  s.factor = 4.0;
  check_rope(128, 1000000.0, s);
}

TEST(Rope, Llama3ScalingMatchesReference) {
  io::RopeScaling s;  // Llama-3.2-1B's values
  s.type = "llama3";
  s.factor = 32.0;
  s.low_freq_factor = 1.0;
  s.high_freq_factor = 4.0;
  s.original_max_position_embeddings = 8192;
  check_rope(64, 500000.0, s);
  // The case must exercise all three bands (kept, slowed, interpolated).
  RopeTable table(64, 500000.0, s, 1);
  const auto plain = expected_inv_freq(64, 500000.0, io::RopeScaling{});
  int kept = 0, slowed = 0, smoothed = 0;
  for (size_t i = 0; i < plain.size(); ++i) {
    const double ratio = table.inv_freq()[i] / plain[i];
    if (ratio == 1.0)
      ++kept;
    else if (std::fabs(ratio - 1.0 / 32) < 1e-12)
      ++slowed;
    else
      ++smoothed;
  }
  EXPECT_GT(kept, 0);
  EXPECT_GT(slowed, 0);
  EXPECT_GT(smoothed, 0);
}

TEST(Rope, RejectsBadInput) {
  io::RopeScaling unknown;
  unknown.type = "yarn";
  EXPECT_ANY_THROW(RopeTable(64, 10000.0, unknown, 16));
  EXPECT_ANY_THROW(RopeTable(63, 10000.0, io::RopeScaling{}, 16));
  RopeTable table(8, 10000.0, io::RopeScaling{}, 16);
  std::vector<float> x(8);
  const int32_t beyond = 16;
  EXPECT_ANY_THROW(apply_rope(x.data(), 1, 8, 1, &beyond, table));
}

}  // namespace
}  // namespace swiftkv::kernels
