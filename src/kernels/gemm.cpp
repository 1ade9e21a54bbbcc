// Linear layers through oneDNN matmul. Why it is shaped this way:
// - The weight is reordered ONCE into the blocked layout the fastest (brgemm, AMX / AVX-512
//   bf16) kernel wants; forward() never reorders it again.
// - oneDNN 2.6 picks a slower generic kernel when the row count is a runtime dimension, so a
//   primitive is created per row count (cached). Every such primitive is created against the
//   same fixed packed weight desc, so one packed copy serves all row counts.
// - oneDNN's bf16 matmul wants bf16 activations; forward() converts x (rows, K) to bf16 in a
//   per-thread scratch buffer (AVX-512 BF16 when available).
#include "kernels/gemm.h"

#include <omp.h>
#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <dnnl.hpp>
#include <mutex>
#include <string>
#include <unordered_map>

#if defined(__AVX512BF16__) && defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "common/bf16.h"
#include "common/error.h"

namespace swiftkv::kernels {

namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

// The process-wide CPU engine. Engines are immutable handles; creating one per Linear would
// only duplicate oneDNN's internal state.
const dnnl::engine& cpu_engine() {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// Row count whose primitive decides the packed weight layout: a prefill-sized GEMM, where
// the layout matters most for throughput.
constexpr int64_t kLayoutRows = 512;
// Largest row count given its own primitive (each costs ~3 ms to create, ~25 KB to keep).
constexpr int64_t kMaxRows = 2048;
// Row counts above this run as a multiple of it plus a remainder, so a Linear creates at
// most kRowQuantum + kMaxRows / kRowQuantum primitives whatever row counts it sees (prompt
// lengths, batch sizes); each piece is still a compute-bound GEMM.
constexpr int64_t kRowQuantum = 64;

// Per-thread growable scratch (bf16 activations, oneDNN scratchpad). Thread-local so that
// concurrent forward() calls from different threads never share a buffer.
struct ThreadScratch {
  std::vector<bf16_t> src;
  std::vector<char> pad;
};
ThreadScratch& thread_scratch() {
  thread_local ThreadScratch scratch;
  return scratch;
}

// (n,) f32 -> (n,) bf16, round to nearest even (the same rounding as f32_to_bf16).
// Serial unless huge: a second parallel region per GEMM costs more than it saves when the
// cores are shared (an OpenMP fork waits for every thread to be scheduled), and a
// (512, 2048) activation converts in ~0.3 ms on one core against a 7-20 ms GEMM.
void convert_to_bf16(const float* x, int64_t n, bf16_t* out) {
  constexpr int64_t kChunk = 32;
  const int64_t chunks = n / kChunk;
#pragma omp parallel for schedule(static) if (n >= (int64_t{1} << 22))
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t i = c * kChunk;
#if defined(__AVX512BF16__) && defined(__AVX512F__)
    __m512bh lo = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
    _mm512_storeu_si512(reinterpret_cast<void*>(out + i), reinterpret_cast<__m512i>(lo));
#else
    for (int64_t j = i; j < i + kChunk; ++j) out[j] = f32_to_bf16(x[j]);
#endif
  }
  for (int64_t i = chunks * kChunk; i < n; ++i) out[i] = f32_to_bf16(x[i]);
}

}  // namespace

struct Linear::Impl {
  struct Primitive {
    dnnl::matmul::primitive_desc pd;
    dnnl::matmul matmul;
    size_t scratchpad_bytes = 0;
  };

  int64_t out_features = 0, in_features = 0;
  WeightType type = WeightType::F32;
  bool has_bias = false;
  dnnl::memory::desc packed_weight_desc;
  std::unique_ptr<void, decltype(&std::free)> packed_storage{nullptr, &std::free};
  dnnl::memory packed_weight;  // in packed_storage, packed_weight_desc's layout
  dnnl::memory bias;           // (1, N) f32

  mutable std::mutex cache_mutex;
  mutable std::unordered_map<int64_t, std::shared_ptr<const Primitive>> cache;  // (rows, threads) ->

  dt weight_dt() const { return type == WeightType::BF16 ? dt::bf16 : dt::f32; }

  dnnl::matmul::primitive_desc make_pd(int64_t rows, const dnnl::memory::desc& weight_desc) const {
    dnnl::memory::desc src({rows, in_features}, weight_dt(), tag::ab);
    dnnl::memory::desc dst({rows, out_features}, dt::f32, tag::ab);
    dnnl::primitive_attr attr;
    // User scratchpad: the caller's thread owns it, so concurrent executions never share one.
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (has_bias) {
      dnnl::memory::desc bias_desc({1, out_features}, dt::f32, tag::ab);
      return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, weight_desc, bias_desc, dst), attr,
                                          cpu_engine());
    }
    return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, weight_desc, dst), attr, cpu_engine());
  }

  // oneDNN fixes a primitive's thread partitioning at creation (from the calling thread's
  // OpenMP thread count), so the cache is keyed on (rows, threads).
  std::shared_ptr<const Primitive> primitive(int64_t rows) const {
    const int64_t key = rows * 65536 + std::min(omp_get_max_threads(), 65535);
    std::lock_guard<std::mutex> lock(cache_mutex);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
    auto prim = std::make_shared<Primitive>();
    try {
      prim->pd = make_pd(rows, packed_weight_desc);
    } catch (const dnnl::error& e) {
      throw Error("oneDNN has no matmul for " + std::to_string(rows) + " rows x " +
                  std::to_string(in_features) + " -> " + std::to_string(out_features) +
                  " with the packed weight layout: " + e.what());
    }
    prim->matmul = dnnl::matmul(prim->pd);
    prim->scratchpad_bytes = prim->pd.scratchpad_desc().get_size();
    cache.emplace(key, prim);
    return prim;
  }
};

namespace {

// Memory for a packed weight: 2 MiB aligned and backed by transparent huge pages where the
// kernel allows, so packing a multi-GB model takes a few thousand page faults, not millions,
// and the GEMMs walk it with fewer TLB misses.
std::unique_ptr<void, decltype(&std::free)> allocate_packed(size_t bytes) {
  constexpr size_t kHugePage = size_t{2} << 20;
  const size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  void* storage = std::aligned_alloc(kHugePage, rounded);
  if (!storage) throw Error("out of memory packing a weight of " + std::to_string(bytes) + " bytes");
  madvise(storage, rounded, MADV_HUGEPAGE);
  return {storage, &std::free};
}

}  // namespace

// Shared by both constructors: `weight` is (N, K) row-major, bf16 or f32.
void Linear::pack(const void* weight, bool weight_is_bf16, const float* bias) {
  Impl& im = *impl_;
  if (im.out_features <= 0 || im.in_features <= 0)
    throw Error("Linear needs positive shapes, got [" + std::to_string(im.out_features) + ", " +
                std::to_string(im.in_features) + "]");
  im.has_bias = bias != nullptr;
  const dnnl::engine& engine = cpu_engine();

  // Let oneDNN choose the weight layout for a prefill-sized GEMM, then keep it fixed.
  dnnl::memory::desc any_weight({im.in_features, im.out_features}, im.weight_dt(), tag::any);
  im.packed_weight_desc = im.make_pd(kLayoutRows, any_weight).weights_desc();

  // The PyTorch weight (N, K) row-major is the matmul's (K, N) weight in "ba" order.
  dnnl::stream stream(engine);
  const dt plain_dt = weight_is_bf16 ? dt::bf16 : dt::f32;
  std::vector<bf16_t> weight_bf16;
  void* plain_ptr = const_cast<void*>(weight);
  if (im.type == WeightType::BF16 && plain_dt == dt::f32) {
    weight_bf16.resize(static_cast<size_t>(im.out_features * im.in_features));
    convert_to_bf16(static_cast<const float*>(weight), im.out_features * im.in_features, weight_bf16.data());
    plain_ptr = weight_bf16.data();
  }
  dnnl::memory::desc plain_desc({im.in_features, im.out_features}, weight_bf16.empty() ? plain_dt : dt::bf16,
                                tag::ba);
  dnnl::memory plain(plain_desc, engine, plain_ptr);
  im.packed_storage = allocate_packed(im.packed_weight_desc.get_size());
  im.packed_weight = dnnl::memory(im.packed_weight_desc, engine, im.packed_storage.get());
  dnnl::reorder(plain, im.packed_weight).execute(stream, plain, im.packed_weight);

  if (bias) {
    im.bias = dnnl::memory({{1, im.out_features}, dt::f32, tag::ab}, engine);
    std::memcpy(im.bias.get_data_handle(), bias, sizeof(float) * im.out_features);
  }
  stream.wait();
}

Linear::Linear(const float* weight, int64_t out_features, int64_t in_features, WeightType type,
               const float* bias)
    : impl_(std::make_unique<Impl>()) {
  impl_->out_features = out_features;
  impl_->in_features = in_features;
  impl_->type = type;
  pack(weight, /*weight_is_bf16=*/false, bias);
}

Linear::Linear(const bf16_t* weight, int64_t out_features, int64_t in_features, const float* bias)
    : impl_(std::make_unique<Impl>()) {
  impl_->out_features = out_features;
  impl_->in_features = in_features;
  impl_->type = WeightType::BF16;
  pack(weight, /*weight_is_bf16=*/true, bias);
}

Linear::Linear(Linear&&) noexcept = default;
Linear& Linear::operator=(Linear&&) noexcept = default;
Linear::~Linear() = default;

int64_t Linear::in_features() const { return impl_->in_features; }
int64_t Linear::out_features() const { return impl_->out_features; }
WeightType Linear::weight_type() const { return impl_->type; }
size_t Linear::packed_bytes() const {
  size_t bytes = impl_->packed_weight_desc.get_size();
  if (impl_->has_bias) bytes += sizeof(float) * impl_->out_features;
  return bytes;
}

size_t Linear::cached_primitives() const {
  std::lock_guard<std::mutex> lock(impl_->cache_mutex);
  return impl_->cache.size();
}

// (rows, K) -> (rows, N)
void Linear::forward(const float* x, int64_t rows, float* y) const {
  if (rows <= 0) return;
  const Impl& im = *impl_;
  // Bound the primitives (and scratch) per Linear: very tall inputs run as kMaxRows-row
  // slices, which are compute-bound, so slicing costs nothing measurable.
  if (rows > kMaxRows) {
    for (int64_t r = 0; r < rows; r += kMaxRows)
      forward(x + r * im.in_features, std::min(kMaxRows, rows - r), y + r * im.out_features);
    return;
  }
  if (rows > kRowQuantum && rows % kRowQuantum != 0) {
    const int64_t whole = rows - rows % kRowQuantum;
    forward(x, whole, y);
    forward(x + whole * im.in_features, rows - whole, y + whole * im.out_features);
    return;
  }
  auto prim = im.primitive(rows);
  const dnnl::engine& engine = cpu_engine();
  ThreadScratch& scratch = thread_scratch();

  void* src_ptr = const_cast<float*>(x);
  if (im.type == WeightType::BF16) {
    const size_t n = static_cast<size_t>(rows * im.in_features);
    if (scratch.src.size() < n) scratch.src.resize(n);
    convert_to_bf16(x, static_cast<int64_t>(n), scratch.src.data());
    src_ptr = scratch.src.data();
  }
  if (scratch.pad.size() < prim->scratchpad_bytes) scratch.pad.resize(prim->scratchpad_bytes);

  dnnl::memory src(prim->pd.src_desc(), engine, src_ptr);
  dnnl::memory dst(prim->pd.dst_desc(), engine, y);
  dnnl::memory pad(prim->pd.scratchpad_desc(), engine, scratch.pad.data());
  // A stream per call: CPU streams are cheap, and a shared one would serialise callers.
  dnnl::stream stream(engine);
  std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, src},
                                             {DNNL_ARG_WEIGHTS, im.packed_weight},
                                             {DNNL_ARG_DST, dst},
                                             {DNNL_ARG_SCRATCHPAD, pad}};
  if (im.has_bias) args.emplace(DNNL_ARG_BIAS, im.bias);
  prim->matmul.execute(stream, args);
  stream.wait();
}

// (rows, in) x (out, in)^T -> (rows, out), float64 accumulation.
void linear_reference(const float* x, const float* weight, const float* bias, int64_t rows,
                      int64_t in_features, int64_t out_features, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < out_features; ++o) {
      double sum = bias ? bias[o] : 0.0;
      const float* xr = x + r * in_features;
      const float* wr = weight + o * in_features;
      for (int64_t i = 0; i < in_features; ++i) sum += static_cast<double>(xr[i]) * wr[i];
      y[r * out_features + o] = static_cast<float>(sum);
    }
  }
}

void set_num_threads(int threads) {
  if (threads < 1) throw Error("thread count must be at least 1, got " + std::to_string(threads));
  omp_set_num_threads(threads);
}

}  // namespace swiftkv::kernels
