#pragma once
// `swiftkv eval`: mean negative log-likelihood / perplexity of a text, and, against a teacher,
// top-1 agreement and mean KL(teacher || model) per token. Every position runs all layers (the
// SwiftKV training form, runtime/scoring.h), which equals the early-exit result at each position.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace swiftkv::runtime {

// The text of an eval data file. Throws swiftkv::Error when the file cannot be read, is empty,
// or is not valid UTF-8 (naming the byte offset and line of the first bad byte).
std::string read_eval_text(const std::filesystem::path& path);

// The scoring the inference-core issue defines (llama2.c's reference figure for stories260K):
// the text split on "\n\n" (nothing stripped), each non-empty paragraph encoded with the
// tokenizer's special tokens (BOS), cut to its first max_len tokens. Paragraphs of fewer than 2
// tokens predict nothing and are left out. Throws swiftkv::Error when max_len < 2.
std::vector<std::vector<int32_t>> eval_sequences(const tokenizer::Tokenizer& tokenizer, std::string_view text,
                                                 int64_t max_len);

// A model, the path it runs (Path::Teacher: the same checkpoint with SwiftKV off) and the
// element type of its KV cache.
struct ScoredModel {
  const model::Model& model;
  model::Path path;
  model::KvDType kv_dtype = model::KvDType::F32;
};

struct EvalResult {
  int64_t sequences = 0;
  int64_t tokens = 0;     // predicted positions: sum over sequences of (length - 1)
  double mean_nll = 0;    // nats per token
  double perplexity = 0;  // exp(mean_nll)
  // Against a teacher (when one was given):
  bool has_teacher = false;
  double teacher_mean_nll = 0;
  double teacher_perplexity = 0;
  double top1_agreement = 0;  // fraction of positions where both argmaxes (first index on ties) agree
  double mean_kl = 0;         // mean over positions of KL(teacher || model) in nats, in float64
  double seconds = 0;
};

// Called after each sequence: (sequences done, all sequences, tokens done).
using EvalProgress = std::function<void(int64_t done, int64_t total, int64_t tokens)>;

// Scores `sequences` one after another, summing in a fixed order: the same inputs, weights
// and thread count give the same figures. The teacher must have the model's vocabulary size.
EvalResult evaluate(const ScoredModel& model, const std::vector<std::vector<int32_t>>& sequences,
                    const std::optional<ScoredModel>& teacher = std::nullopt,
                    const EvalProgress& progress = {});

}  // namespace swiftkv::runtime
