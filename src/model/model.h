#pragma once
// A Llama-family model (llama, qwen2, and their SwiftKV variants) with weights packed for
// the GEMM backend, and its forward pass.
//
// forward() runs a chunk of one sequence's tokens:
//   layers [0, M) on every token (each writes its own KV cache);
//   SwiftKV: s = rmsnorm(h_M; norm_swiftkv), ONE GEMM gives every later group's K/V for every
//   token; only the rows whose logits are wanted continue through layers [M, L) with
//   q_proj_swiftkv, reading the full later-layer caches;
//   Teacher path: every layer with its original q/k/v (needs the teacher tensors).
// Asking for the logits of every row therefore runs the SwiftKV "training form", which by
// SWIFTKV.md's invariant equals the early-exit result at every position.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "io/model_config.h"
#include "io/safetensors.h"
#include "kernels/gemm.h"
#include "kernels/ops.h"
#include "model/kv_cache.h"

namespace swiftkv::model {

enum class Path {
  SwiftKV,  // the checkpoint's own path (for a plain model: the ordinary forward)
  Teacher,  // original q/k/v in every layer (--swiftkv off)
};

struct LoadOptions {
  kernels::WeightType weight_type = kernels::WeightType::BF16;
  // Pack the teacher q/k/v of layers >= M too, so Path::Teacher can run.
  bool load_teacher = false;
};

enum class Logits { Last, All };

class Model {
 public:
  // Validates the checkpoint against its config, then packs every weight once; the mapped
  // file's pages are released after packing (the embedding stays mapped for row lookups).
  static std::unique_ptr<Model> load(const std::filesystem::path& model_dir, const LoadOptions& options);
  ~Model();

  const io::ModelConfig& config() const { return config_; }
  bool has_teacher() const;
  // A cache for one sequence of up to `capacity` tokens, laid out for `path`.
  KvCache make_cache(int64_t capacity, Path path) const;
  int64_t kv_bytes_per_token(Path path) const;
  size_t weight_bytes() const;  // packed weights held in memory

  // Runs tokens at positions start_position.. of the sequence cached in `cache` (which must
  // already hold positions [0, start_position)). Returns logits: (1 or T, vocab).
  std::vector<float> forward(std::span<const int32_t> tokens, int64_t start_position, KvCache& cache,
                             Path path, Logits logits) const;

  struct Layer;
  struct Scratch;

 private:
  Model();
  void embed(std::span<const int32_t> tokens, float* out) const;
  // The attention half of a decoder layer on `rows` rows of h (in place). write_kv: project
  // q, k, v with the layer's own (or teacher) q/k/v and append k, v to cache `cache_index`;
  // otherwise project q with q_proj_swiftkv and read the cache SingleInputKV filled.
  void attention_block(const Layer& layer, float* h, int64_t rows, const int32_t* positions, KvCache& cache,
                       int64_t cache_index, bool write_kv, Scratch& scratch) const;
  void mlp_block(const Layer& layer, float* h, int64_t rows, Scratch& scratch) const;
  // Activation buffers are reused across calls: first-touching fresh ones (page faults on
  // hundreds of MB per prefill) cost more than the math. One per concurrent forward().
  std::unique_ptr<Scratch> take_scratch() const;
  void return_scratch(std::unique_ptr<Scratch> scratch) const;

  io::ModelConfig config_;
  std::optional<io::TensorStore> store_;  // keeps the embedding mapped
  const io::TensorInfo* embedding_ = nullptr;
  std::vector<Layer> layers_;
  std::vector<float> final_norm_, norm_swiftkv_;
  std::optional<kernels::Linear> swiftkv_kv_;  // (T, H) -> (T, groups * 2 * nkv * d)
  std::optional<kernels::Linear> lm_head_;
  std::unique_ptr<kernels::RopeTable> rope_;
  mutable std::mutex scratch_mutex_;
  mutable std::vector<std::unique_ptr<Scratch>> scratch_pool_;
};

}  // namespace swiftkv::model
