#pragma once
// Floating-point error bounds the kernel tests derive their tolerances from (Higham,
// "Accuracy and Stability of Numerical Algorithms", ch. 2-3), instead of magic numbers.
#include <cmath>
#include <cstdint>
#include <limits>

namespace swiftkv::kernels::testing {

// Unit roundoff (half the machine epsilon) of float32 and bfloat16 (8 significand bits).
constexpr double kUnitF32 = std::numeric_limits<float>::epsilon() / 2;  // 2^-24
constexpr double kUnitBF16 = 1.0 / 256;                                 // 2^-8

// gamma_n = n u / (1 - n u): bound on the relative error of any order of summing n products
// in precision u (worst case; the kernels' blocked sums are usually far better).
inline double gamma(int64_t n, double unit = kUnitF32) {
  const double nu = static_cast<double>(n) * unit;
  return nu / (1.0 - nu);
}

// The vectorised exp used by softmax and SiLU (kernels/simd.h) is documented at ~2 ulp
// (= 4 u); SimdExp.RelativeErrorWithinDocumentedBound holds it to that (it measures ~1.3 u).
constexpr double kExpRelativeError = 2 * 2 * kUnitF32;

}  // namespace swiftkv::kernels::testing
