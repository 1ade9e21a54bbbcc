#include "runtime/scoring.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "common/error.h"

namespace swiftkv::runtime {

LogSoftmax::LogSoftmax(std::span<const float> logits) : logits_(logits) {
  if (logits.empty()) throw Error("log_softmax of an empty logits row");
  max_logit_ = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float logit : logits) sum += std::exp(static_cast<double>(logit - max_logit_));
  log_sum_ = std::log(sum);
}

double LogSoftmax::at(int32_t token) const {
  // A target id past the model's vocabulary (a tokenizer larger than the model) is an error,
  // never a read past the row.
  if (token < 0 || static_cast<size_t>(token) >= logits_.size())
    throw Error("token id " + std::to_string(token) + " is outside the model's vocabulary [0, " +
                std::to_string(logits_.size()) + ")");
  return static_cast<double>(logits_[static_cast<size_t>(token)] - max_logit_) - log_sum_;
}

std::vector<std::pair<int32_t, float>> LogSoftmax::top(int32_t n) const {
  std::vector<int32_t> ids(logits_.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
  const size_t count = std::min(ids.size(), static_cast<size_t>(std::max(n, 0)));
  std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(count), ids.end(),
                    [&](int32_t a, int32_t b) {
                      const float la = logits_[static_cast<size_t>(a)], lb = logits_[static_cast<size_t>(b)];
                      return la != lb ? la > lb : a < b;
                    });
  std::vector<std::pair<int32_t, float>> best;
  for (size_t i = 0; i < count; ++i) best.emplace_back(ids[i], static_cast<float>(at(ids[i])));
  return best;
}

double log_softmax_at(std::span<const float> logits, int32_t token) { return LogSoftmax(logits).at(token); }

std::vector<float> sequence_logits(const model::Model& model, std::span<const int32_t> tokens,
                                   model::Path path, model::KvDType kv_dtype) {
  if (tokens.empty()) return {};
  model::KvCache cache = model.make_cache(static_cast<int64_t>(tokens.size()), path, kv_dtype);
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
