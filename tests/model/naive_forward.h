#pragma once
// An independent float64 reference forward for Llama / Qwen2 checkpoints, with and without
// SwiftKV, written from SWIFTKV.md and the Hugging Face modelling code only (it shares no
// code with src/model or src/kernels, so the engine's tests can compare against it).
//
// It runs the "training form": every position through every layer, causal attention over
// positions 0..T-1. By SWIFTKV.md's invariant, the engine's early-exit logits for a token
// equal these logits at that token's position.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <vector>

#include "io/model_config.h"

namespace swiftkv::testing {

// Teacher: every layer uses its original q/k/v projections (SwiftKV off).
// SwiftKV: layers >= M take K/V from SingleInputKV (norm_swiftkv of the input of layer M,
// the group leader's k/v_proj_swiftkv) and Q from q_proj_swiftkv. For a checkpoint without
// SwiftKV (M == L) both modes are the same.
enum class ForwardMode { Teacher, SwiftKV };

// Everything one forward computed, for tests that need more than logits.
struct NaiveTrace {
  // hidden[l][t] = residual stream at the input of layer l (hidden[0] = embeddings,
  // hidden[L] = output of the last layer, before the final norm). [L+1][T][H]
  std::vector<std::vector<std::vector<double>>> hidden;
  // The keys (after RoPE) and values layer l attended over. [L][T][nkv*d]
  std::vector<std::vector<std::vector<double>>> keys;
  std::vector<std::vector<std::vector<double>>> values;
  std::vector<std::vector<double>> logits;  // [T][vocab]
};

// RoPE inverse frequencies for one head ([d/2]): theta^(-2i/d), then scaled as the config
// says ("linear": divided by factor; "llama3": transformers' _compute_llama3_parameters).
// Throws swiftkv::Error for an unknown scaling type.
std::vector<double> rope_inverse_frequencies(const io::ModelConfig& config);

class NaiveModel {
 public:
  // Reads config.json (io::load_model_config) and every tensor the forward needs as f32
  // (io::TensorStore), kept in double. Teacher q/k/v of layers >= M are loaded when the
  // checkpoint has them. Throws swiftkv::Error for a missing tensor or a wrong shape.
  explicit NaiveModel(const std::filesystem::path& dir);
  ~NaiveModel();
  NaiveModel(NaiveModel&&) noexcept;
  NaiveModel& operator=(NaiveModel&&) noexcept;

  const io::ModelConfig& config() const;
  // Whether Teacher mode can run (false for a SwiftKV checkpoint without the teacher's q/k/v).
  bool has_teacher() const;

  // Logits for every position of `tokens` (positions 0..T-1): [T][vocab].
  // Throws swiftkv::Error for a token id outside the vocabulary, or Teacher mode without
  // the teacher's tensors.
  std::vector<std::vector<double>> forward(const std::vector<int32_t>& tokens, ForwardMode mode) const;
  NaiveTrace trace(const std::vector<int32_t>& tokens, ForwardMode mode) const;

  struct Weights;

 private:
  std::unique_ptr<Weights> weights_;
};

}  // namespace swiftkv::testing
