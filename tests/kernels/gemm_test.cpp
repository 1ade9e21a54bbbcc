// Linear (oneDNN matmul, prepacked weights) against the float64 reference.
//
// Tolerance derivation for y = b + sum_i x_i w_i over K terms, S = sum_i |x_i w_i|:
//  * f32 weights: the kernel sums K exact-input products (+ the bias) in float32, so
//    |y - y_ref| <= gamma_{K+1} (S + |b|), plus u32 |y| for rounding the reference to float.
//  * bf16 weights: x and w are each rounded to bf16 (relative error <= u_bf16 = 2^-8), so a
//    product is off by <= (2 u_bf16 + u_bf16^2) |x w|; bf16 x bf16 products are exact in float32
//    and summed as above. Against the f32 reference:
//      |y - y_ref| <= (2 u + u^2) S + gamma_{K+1} ((1 + u)^2 S + |b|) + u32 |y|.
//    That bound is loose, so the same outputs are also checked against the reference fed the
//    bf16-rounded inputs the kernel really multiplies, where only the f32 summation term is
//    left — a tight check that fails if any element is dropped, misplaced or not rounded.
#include "kernels/gemm.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <random>
#include <thread>
#include <vector>

#include "common/bf16.h"
#include "kernels/error_bounds.h"
#include "kernels/random_values.h"

namespace swiftkv::kernels {
namespace {

using testing::gamma;
using testing::kUnitBF16;
using testing::kUnitF32;

using testing::random_values;

std::vector<float> rounded_to_bf16(const std::vector<float>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = bf16_to_f32(f32_to_bf16(v[i]));
  return out;
}

// S = sum_i |x_i w_i| per output, in double.
std::vector<double> abs_dot(const std::vector<float>& x, const std::vector<float>& w, int64_t rows, int64_t k,
                            int64_t n) {
  std::vector<double> s(static_cast<size_t>(rows * n));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < n; ++o) {
      double sum = 0;
      for (int64_t i = 0; i < k; ++i) sum += std::fabs(static_cast<double>(x[r * k + i]) * w[o * k + i]);
      s[r * n + o] = sum;
    }
  return s;
}

struct Case {
  int64_t rows, in, out;
  bool bias;
};

void check_linear(WeightType type, const Case& c) {
  SCOPED_TRACE("rows=" + std::to_string(c.rows) + " K=" + std::to_string(c.in) +
               " N=" + std::to_string(c.out) + (c.bias ? " bias" : "") +
               (type == WeightType::BF16 ? " bf16" : " f32"));
  const auto weight = random_values(static_cast<size_t>(c.out * c.in), 11, 1.0f / std::sqrt(float(c.in)));
  const auto x = random_values(static_cast<size_t>(c.rows * c.in), 12);
  const auto bias = random_values(static_cast<size_t>(c.out), 13);
  const float* bias_ptr = c.bias ? bias.data() : nullptr;

  Linear linear(weight.data(), c.out, c.in, type, bias_ptr);
  EXPECT_EQ(linear.in_features(), c.in);
  EXPECT_EQ(linear.out_features(), c.out);
  EXPECT_EQ(linear.weight_type(), type);
  const size_t element = type == WeightType::BF16 ? 2 : 4;
  EXPECT_GE(linear.packed_bytes(), static_cast<size_t>(c.in * c.out) * element);

  std::vector<float> y(static_cast<size_t>(c.rows * c.out), NAN), ref(y.size());
  linear.forward(x.data(), c.rows, y.data());
  linear_reference(x.data(), weight.data(), bias_ptr, c.rows, c.in, c.out, ref.data());
  const auto s = abs_dot(x, weight, c.rows, c.in, c.out);

  // Tight check against the inputs as the kernel sees them.
  std::vector<float> x_seen = x, w_seen = weight, ref_seen = ref;
  if (type == WeightType::BF16) {
    x_seen = rounded_to_bf16(x);
    w_seen = rounded_to_bf16(weight);
    linear_reference(x_seen.data(), w_seen.data(), bias_ptr, c.rows, c.in, c.out, ref_seen.data());
  }
  const auto s_seen = abs_dot(x_seen, w_seen, c.rows, c.in, c.out);

  int failures = 0;
  for (int64_t r = 0; r < c.rows; ++r) {
    for (int64_t o = 0; o < c.out && failures < 10; ++o) {
      const size_t idx = static_cast<size_t>(r * c.out + o);
      const double b = c.bias ? std::fabs(bias[o]) : 0.0;
      const double tight = gamma(c.in + 1) * (s_seen[idx] + b) + kUnitF32 * std::fabs(ref_seen[idx]);
      double loose = tight;
      if (type == WeightType::BF16) {
        const double u = kUnitBF16;
        loose = (2 * u + u * u) * s[idx] + gamma(c.in + 1) * ((1 + u) * (1 + u) * s[idx] + b) +
                kUnitF32 * std::fabs(ref[idx]);
      }
      const double err_seen = std::fabs(static_cast<double>(y[idx]) - ref_seen[idx]);
      const double err = std::fabs(static_cast<double>(y[idx]) - ref[idx]);
      if (!(err_seen <= tight) || !(err <= loose)) {
        ++failures;
        ADD_FAILURE() << "y[" << r << "," << o << "] = " << y[idx] << ", reference " << ref[idx]
                      << " (on the kernel's inputs " << ref_seen[idx] << "), errors " << err << " / "
                      << err_seen << ", bounds " << loose << " / " << tight;
      }
    }
  }
}

const Case kCases[] = {
    {1, 72, 40, false},   {3, 72, 40, true},
    {64, 72, 40, false},  {300, 72, 40, true},
    {1, 17, 5, true},     {7, 2048, 130, false},
    {64, 512, 256, true}, {300, 2048, 130, true},
    {1, 2048, 512, true}, {300, 96, 1000, false},
    {1, 8192, 64, false}, {2100, 40, 24, true},  // taller than one primitive's row limit: runs in slices
};

TEST(Linear, Float32MatchesReference) {
  for (const Case& c : kCases) check_linear(WeightType::F32, c);
}

TEST(Linear, BFloat16MatchesReference) {
  for (const Case& c : kCases) check_linear(WeightType::BF16, c);
}

// The same Linear serves many row counts (one cached primitive each) from several threads
// at once; each call must still equal the reference.
TEST(Linear, ConcurrentCallsWithDifferentRowCounts) {
  const int64_t in = 96, out = 80;
  const auto weight = random_values(static_cast<size_t>(out * in), 21);
  const auto bias = random_values(static_cast<size_t>(out), 22);
  Linear linear(weight.data(), out, in, WeightType::F32, bias.data());
  const int64_t row_counts[] = {1, 5, 33, 64, 1, 5, 33, 64};
  std::vector<int> ok(std::size(row_counts), 0);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < std::size(row_counts); ++t) {
    threads.emplace_back([&, t] {
      const int64_t rows = row_counts[t];
      const auto x = random_values(static_cast<size_t>(rows * in), 100 + static_cast<uint32_t>(t));
      std::vector<float> y(static_cast<size_t>(rows * out)), ref(y.size());
      const auto s = abs_dot(x, weight, rows, in, out);
      linear_reference(x.data(), weight.data(), bias.data(), rows, in, out, ref.data());
      bool good = true;
      for (int repeat = 0; repeat < 20; ++repeat) {
        linear.forward(x.data(), rows, y.data());
        for (size_t i = 0; i < y.size(); ++i) {
          const double tol = gamma(in + 1) * (s[i] + std::fabs(bias[i % out])) + kUnitF32 * std::fabs(ref[i]);
          good = good && std::fabs(static_cast<double>(y[i]) - ref[i]) <= tol;
        }
      }
      ok[t] = good;
    });
  }
  for (auto& th : threads) th.join();
  for (size_t t = 0; t < ok.size(); ++t) EXPECT_TRUE(ok[t]) << "thread " << t << " rows " << row_counts[t];
}

// Primitives are cached per thread count too: changing it between calls must still give
// the reference result.
TEST(Linear, ThreadCountChangesBetweenCalls) {
  const int previous = omp_get_max_threads();
  const int64_t in = 256, out = 192, rows = 64;
  const auto weight = random_values(static_cast<size_t>(out * in), 41);
  const auto x = random_values(static_cast<size_t>(rows * in), 42);
  Linear linear(weight.data(), out, in, WeightType::F32);
  std::vector<float> ref(static_cast<size_t>(rows * out));
  linear_reference(x.data(), weight.data(), nullptr, rows, in, out, ref.data());
  const auto s = abs_dot(x, weight, rows, in, out);
  for (int threads : {1, 2, 3, 1}) {
    set_num_threads(threads);
    std::vector<float> y(ref.size(), NAN);
    linear.forward(x.data(), rows, y.data());
    for (size_t i = 0; i < y.size(); ++i)
      ASSERT_LE(std::fabs(static_cast<double>(y[i]) - ref[i]),
                gamma(in + 1) * s[i] + kUnitF32 * std::fabs(ref[i]))
          << "threads " << threads << " i " << i;
  }
  set_num_threads(previous);
}

TEST(Linear, MovedLinearKeepsItsWeights) {
  const int64_t in = 40, out = 24, rows = 3;
  const auto weight = random_values(static_cast<size_t>(out * in), 31);
  const auto x = random_values(static_cast<size_t>(rows * in), 32);
  Linear original(weight.data(), out, in, WeightType::F32);
  std::vector<float> before(static_cast<size_t>(rows * out)), after(before.size());
  original.forward(x.data(), rows, before.data());
  Linear moved = std::move(original);
  moved.forward(x.data(), rows, after.data());
  EXPECT_EQ(before, after);
}

// Every row count from 1 to 600 (prompt lengths, batch sizes) must not create a primitive
// each: at most 64 exact small counts plus one per multiple of 64.
TEST(Linear, PrimitivesStayBoundedOverManyRowCounts) {
  set_num_threads(1);
  const auto weight = random_values(16 * 24, 21);
  Linear linear(weight.data(), 16, 24, WeightType::F32);
  const auto x = random_values(600 * 24, 22);
  std::vector<float> y(600 * 16), want(600 * 16);
  for (int64_t rows = 1; rows <= 600; ++rows) linear.forward(x.data(), rows, y.data());
  EXPECT_LE(linear.cached_primitives(), 64u + 600 / 64);
  // The last call (600 rows, split 576 + 24) against the float64 reference, within the f32
  // dot-product bound gamma_K * sum_k |x_k w_k|.
  linear_reference(x.data(), weight.data(), nullptr, 600, 24, 16, want.data());
  for (int64_t r = 0; r < 600; ++r)
    for (int64_t o = 0; o < 16; ++o) {
      double magnitude = 0;
      for (int64_t k = 0; k < 24; ++k) magnitude += std::fabs(double(x[r * 24 + k]) * weight[o * 24 + k]);
      ASSERT_LE(std::fabs(y[r * 16 + o] - want[r * 16 + o]), testing::gamma(24) * magnitude + 1e-30)
          << "row " << r << " out " << o;
    }
}

TEST(Linear, RejectsEmptyShapes) {
  const float w = 1.0f;
  EXPECT_ANY_THROW(Linear(&w, 0, 1, WeightType::F32));
  EXPECT_ANY_THROW(set_num_threads(0));
}

}  // namespace
}  // namespace swiftkv::kernels
