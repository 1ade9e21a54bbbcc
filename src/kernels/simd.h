#pragma once
// 16-lane float vectors as GCC/Clang vector extensions: one AVX-512 register under
// -march=native on this CPU, two AVX2 registers (or four SSE) elsewhere, so the kernels stay
// portable without per-ISA copies. Internal to src/kernels.
#include <cmath>
#include <cstdint>
#include <cstring>

// Without AVX-512 GCC warns that passing these 64-byte vectors changes the ABI; they never
// cross a library boundary (everything here is inline, internal to the kernels).
#pragma GCC diagnostic ignored "-Wpsabi"

namespace swiftkv::kernels::simd {

constexpr int kLanes = 16;
typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));

inline v16f splat(float x) { return v16f{} + x; }

inline v16f load(const float* p) {  // unaligned
  v16f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, v16f v) { std::memcpy(p, &v, sizeof v); }

inline v16f vmax(v16f a, v16f b) { return a > b ? a : b; }

// e^x per lane, relative error ~2 ulp over the float range: x = n ln2 + r with |r| <= ln2/2,
// e^r by its degree-7 Taylor polynomial (truncation < 1e-8 relative), 2^n built in the
// exponent bits. x below -87 gives 0 (no subnormals), x above 88 gives inf, NaN stays NaN.
inline v16f exp(v16f x) {
  const v16f log2e = splat(1.44269504088896341f);
  const v16f ln2_hi = splat(0.693145751953125f);  // exact in float: n * ln2_hi is exact
  const v16f ln2_lo = splat(1.42860682030941723212e-6f);
  const v16f round_magic = splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  v16f clamped = vmax(x, splat(-87.0f));
  clamped = clamped < splat(88.0f) ? clamped : splat(88.0f);
  v16f n = (clamped * log2e + round_magic) - round_magic;
  v16f r = (clamped - n * ln2_hi) - n * ln2_lo;
  v16f p = splat(1.0f / 5040.0f);
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  v16i exponent = (__builtin_convertvector(n, v16i) + 127) << 23;
  v16f scale;
  std::memcpy(&scale, &exponent, sizeof scale);
  v16f result = p * scale;
  result = x < splat(-87.0f) ? splat(0.0f) : result;
  result = x > splat(88.0f) ? splat(INFINITY) : result;
  return x == x ? result : x;  // NaN stays NaN (the clamps above would hide it)
}

}  // namespace swiftkv::kernels::simd
