#pragma once
// A Llama-family model (llama, qwen2, and their SwiftKV variants) with weights packed for
// the GEMM backend, and its forward pass.
//
// forward() runs one step over a batch of sequences (each a chunk of its tokens):
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
  // Pack the teacher q/k/v of layers >= M, so Path::Teacher can run.
  bool load_teacher = false;
  // Pack norm_swiftkv and the *_swiftkv projections, so Path::SwiftKV can run. Off for a
  // teacher-only run, so memory holds one copy of the attention weights.
  bool load_student = true;
};

enum class Logits { None, Last, All };

// The logits rows a step of `tokens` positions returns: every position's, the last one's, or none.
inline int64_t logits_rows(Logits logits, int64_t tokens) {
  return logits == Logits::All ? tokens : logits == Logits::Last ? 1 : 0;
}

// One sequence's part of a batched step: `tokens` at positions start_position.., whose KV
// lives in the pool blocks of `block_table` (which must cover every position written).
struct SequenceStep {
  std::span<const int32_t> tokens;
  int64_t start_position = 0;
  const BlockTable* block_table = nullptr;
  Logits logits = Logits::Last;  // None: a prompt chunk that is not the prompt's last
};

// Physical KV caches `path` of a model with `config` keeps (SwiftKV: M + (L - M) / G; teacher: L).
int64_t num_kv_caches(const io::ModelConfig& config, Path path);

// KV-cache bytes one token takes on `path` of a model with `config` (every physical cache, int8
// scales included), without loading it.
int64_t kv_bytes_per_token(const io::ModelConfig& config, Path path, KvDType dtype);

class Model {
 public:
  // Validates the checkpoint against its config, then packs every weight once; the mapped
  // file's pages are released after packing (the embedding stays mapped for row lookups).
  static std::unique_ptr<Model> load(const std::filesystem::path& model_dir, const LoadOptions& options);
  ~Model();

  const io::ModelConfig& config() const { return config_; }
  bool has_teacher() const;
  bool has_student() const;
  // A cache for one sequence of up to `capacity` tokens, laid out for `path`.
  KvCache make_cache(int64_t capacity, Path path, KvDType dtype = KvDType::F32) const;
  // KV-cache bytes one token of a sequence takes on `path` (every physical cache, int8 scales included).
  int64_t kv_bytes_per_token(Path path, KvDType dtype = KvDType::F32) const;
  size_t weight_bytes() const;  // packed weights held in memory

  // One step over a batch: every step's tokens go through layers [0, M) (and their K/V into
  // the pool), SingleInputKV fills the later caches, and only rows whose logits are wanted
  // run layers [M, L). Returns the logits rows in step order: 0, 1 or T per step (vocab wide).
  std::vector<float> forward(std::span<const SequenceStep> steps, KvPool& pool, Path path) const;
  // The same for one sequence with its own cache (which must already hold positions
  // [0, start_position)).
  std::vector<float> forward(std::span<const int32_t> tokens, int64_t start_position, KvCache& cache,
                             Path path, Logits logits) const;
  // Empty pool of `num_blocks` blocks for `path`, for many sequences.
  KvPool make_pool(int64_t num_blocks, int64_t block_size, Path path, KvDType dtype = KvDType::F32) const;

  struct Layer;
  struct Scratch;

 private:
  Model();
  void embed(std::span<const int32_t> tokens, float* out) const;
  // Rows of a batch that belong to one sequence.
  struct Segment {
    int64_t first_row, rows;
    const BlockTable* block_table;
  };
  // The attention half of a decoder layer on the rows of h (in place). write_kv: project
  // q, k, v with the layer's own (or teacher) q/k/v and write k, v to cache `cache_index`;
  // otherwise project q with q_proj_swiftkv and read the cache SingleInputKV filled.
  void attention_block(const Layer& layer, float* h, int64_t rows, const int32_t* positions,
                       const std::vector<Segment>& segments, KvPool& pool, int64_t cache_index, bool write_kv,
                       Scratch& scratch) const;
  int64_t num_caches(Path path) const;
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
