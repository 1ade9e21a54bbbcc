// Conversions between float32 K/V rows and the KV cache's stored element types.
#include <algorithm>
#include <cmath>
#include <limits>

#include "common/bf16.h"
#include "kernels/ops.h"

namespace swiftkv::kernels {

void to_bf16(const float* x, int64_t n, uint16_t* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = f32_to_bf16(x[i]);
}

float quantize_int8(const float* x, int64_t n, int8_t* out) {
  float max_abs = 0;
  bool finite = true;
  for (int64_t i = 0; i < n; ++i) {
    max_abs = std::max(max_abs, std::fabs(x[i]));
    finite = finite && std::isfinite(x[i]);
  }
  if (!finite || max_abs == 0) {
    // All zero: scale 0 reads back zeros. Inf/NaN: a NaN scale, so the damage shows downstream
    // as it would in a float32 cache instead of being rounded away.
    std::fill_n(out, n, int8_t{0});
    return finite ? 0.0f : std::numeric_limits<float>::quiet_NaN();
  }
  const float scale = max_abs / 127.0f;
  for (int64_t i = 0; i < n; ++i) {
    // x / scale is within an ulp of [-127, 127]; the clamp keeps a rounded-up 127.00001 in range.
    const long q = std::lrint(x[i] / scale);
    out[i] = static_cast<int8_t>(std::clamp(q, -127L, 127L));
  }
  return scale;
}

// Plain loops: with -march=native GCC vectorises both (vpmovzxwd + vpslld; vpmovsxbd +
// vcvtdq2ps), and it scalarises the int8 one written with vector extensions.
void from_bf16(const uint16_t* x, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(x[i]);
}

void dequantize_int8(const int8_t* x, int64_t n, float scale, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(x[i]) * scale;
}

}  // namespace swiftkv::kernels
