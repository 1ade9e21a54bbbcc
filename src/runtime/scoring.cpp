#include "runtime/scoring.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "common/error.h"

namespace swiftkv::runtime {

double log_softmax_at(std::span<const float> logits, int32_t token) {
  // A target id past the model's vocabulary (a tokenizer larger than the model) is an error,
  // never a read past the row.
  if (token < 0 || static_cast<size_t>(token) >= logits.size())
    throw Error("token id " + std::to_string(token) + " is outside the model's vocabulary [0, " +
                std::to_string(logits.size()) + ")");
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float logit : logits) sum += std::exp(static_cast<double>(logit - max_logit));
  return static_cast<double>(logits[static_cast<size_t>(token)] - max_logit) - std::log(sum);
}

std::vector<float> sequence_logits(const model::Model& model, std::span<const int32_t> tokens,
                                   model::Path path) {
  if (tokens.empty()) return {};
  model::KvCache cache = model.make_cache(static_cast<int64_t>(tokens.size()), path);
  return model.forward(tokens, 0, cache, path, model::Logits::All);
}

std::vector<double> token_logprobs(const model::Model& model, std::span<const int32_t> tokens,
                                   model::Path path) {
  std::vector<double> result;
  if (tokens.size() < 2) return result;
  const int64_t vocab = model.config().vocab_size;
  std::vector<float> logits = sequence_logits(model, tokens.first(tokens.size() - 1), path);
  result.resize(tokens.size() - 1);
  for (size_t t = 0; t + 1 < tokens.size(); ++t)
    result[t] = log_softmax_at(
        std::span<const float>(logits).subspan(t * static_cast<size_t>(vocab), static_cast<size_t>(vocab)),
        tokens[t + 1]);
  return result;
}

}  // namespace swiftkv::runtime
