#pragma once
// Log-likelihood of token sequences: every position runs all layers (the SwiftKV training
// form, equal to the early-exit path at each position), for eval, perplexity and prompt
// logprobs.
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "model/model.h"

namespace swiftkv::runtime {

// Logits (T, vocab) of every position of `tokens` in the training form, over a KV cache of
// `kv_dtype`: row t is the distribution of the token after tokens[0..t]. The one scoring forward
// that token_logprobs and eval (runtime/eval.h) share.
std::vector<float> sequence_logits(const model::Model& model, std::span<const int32_t> tokens,
                                   model::Path path, model::KvDType kv_dtype = model::KvDType::F32);

// log p(tokens[t] | tokens[0..t-1]) for t = 1..T-1 (T-1 values), in float64.
std::vector<double> token_logprobs(const model::Model& model, std::span<const int32_t> tokens,
                                   model::Path path);

// log_softmax of one logits row, computed stably in float64: the normaliser once, then any entry.
class LogSoftmax {
 public:
  explicit LogSoftmax(std::span<const float> logits);  // the row must outlive this
  // log_softmax(logits)[token]; throws swiftkv::Error for an id outside the row.
  double at(int32_t token) const;
  // The n most likely (id, log-probability), best first, lower id first on ties.
  std::vector<std::pair<int32_t, float>> top(int32_t n) const;

 private:
  std::span<const float> logits_;
  float max_logit_;
  double log_sum_;  // log(sum(exp(logits - max_logit)))
};

// log_softmax(logits)[token] computed stably in float64.
double log_softmax_at(std::span<const float> logits, int32_t token);

}  // namespace swiftkv::runtime
