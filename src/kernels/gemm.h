#pragma once
// The one GEMM seam: y = x W^T (+ bias) through oneDNN matmul primitives, with the weight
// prepacked once (at load) into the layout oneDNN's fastest kernel wants (AMX / AVX-512
// bf16 here). Activations are float32 in and out; bf16 weights get bf16 activations.
#include <cstdint>
#include <memory>
#include <vector>

#include "common/bf16.h"

namespace swiftkv::kernels {

enum class WeightType { F32, BF16 };

class Linear {
 public:
  // weight: [out_features, in_features] row-major float32 (PyTorch Linear layout); bias may be
  // null. The weight is converted/packed here; the caller may free its copy afterwards.
  Linear(const float* weight, int64_t out_features, int64_t in_features, WeightType type,
         const float* bias = nullptr);
  // The same from a bf16 weight (e.g. straight from a mapped checkpoint), packed as BF16 with
  // no float32 copy: loading stays near one copy of the weights in memory.
  Linear(const bf16_t* weight, int64_t out_features, int64_t in_features, const float* bias = nullptr);
  Linear(Linear&&) noexcept;
  Linear& operator=(Linear&&) noexcept;
  ~Linear();

  // (rows, in) -> (rows, out). Thread-safe; primitives are created once per row count and
  // cached (oneDNN 2.6 picks a slower kernel for runtime row counts).
  void forward(const float* x, int64_t rows, float* y) const;

  int64_t in_features() const;
  int64_t out_features() const;
  WeightType weight_type() const;
  size_t packed_bytes() const;       // memory held by the packed weight (+ bias)
  size_t cached_primitives() const;  // oneDNN primitives created so far (bounded, see gemm.cpp)

  struct Impl;

 private:
  void pack(const void* weight, bool weight_is_bf16, const float* bias);
  std::unique_ptr<Impl> impl_;
};

// Scalar reference, float64 accumulation: (rows, in) x (out, in)^T -> (rows, out).
void linear_reference(const float* x, const float* weight, const float* bias, int64_t rows,
                      int64_t in_features, int64_t out_features, float* y);

// Sets the thread count used by every kernel (OpenMP and oneDNN) started from the calling
// thread: OpenMP keeps this setting per thread, so call it on the thread(s) that run the
// forward passes. Linear caches one primitive per (rows, thread count).
void set_num_threads(int threads);

}  // namespace swiftkv::kernels
