#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <sstream>

#include "common/error.h"

namespace swiftkv::runtime {

namespace {

std::string format_value(double value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

// Conditions are written as !(valid) so that NaN fails them too.
void require(bool valid, const char* name, double value, const char* expected) {
  if (!valid) {
    throw Error(std::string("invalid sampling parameter ") + name + " = " + format_value(value) +
                ": must be " + expected);
  }
}

}  // namespace

void SamplingParams::validate() const {
  require(temperature >= 0.0f && std::isfinite(temperature), "temperature", temperature, ">= 0");
  require(top_p > 0.0f && top_p <= 1.0f, "top_p", top_p, "in (0, 1]");
  require(min_p >= 0.0f && min_p <= 1.0f, "min_p", min_p, "in [0, 1]");
  require(top_k >= -1, "top_k", top_k, ">= -1 (0 or -1 disables it)");
  require(repetition_penalty > 0.0f && std::isfinite(repetition_penalty), "repetition_penalty",
          repetition_penalty, "> 0");
  require(std::isfinite(presence_penalty), "presence_penalty", presence_penalty, "finite");
  require(std::isfinite(frequency_penalty), "frequency_penalty", frequency_penalty, "finite");
}

SamplingParams default_sampling_params(const io::GenerationDefaults& defaults) {
  SamplingParams params;
  if (defaults.temperature) params.temperature = static_cast<float>(*defaults.temperature);
  if (defaults.top_p) params.top_p = static_cast<float>(*defaults.top_p);
  if (defaults.min_p) params.min_p = static_cast<float>(*defaults.min_p);
  if (defaults.top_k) params.top_k = *defaults.top_k;
  if (defaults.repetition_penalty)
    params.repetition_penalty = static_cast<float>(*defaults.repetition_penalty);
  if (defaults.do_sample && !*defaults.do_sample) params.temperature = 0;
  return params;
}

Sampler::Sampler(const SamplingParams& params, int32_t vocab_size)
    : params_(params), vocab_size_(vocab_size), rng_(params.seed) {
  params_.validate();
  if (vocab_size_ <= 0)
    throw Error("sampler: vocab_size must be positive, got " + std::to_string(vocab_size_));
  counts_.assign(static_cast<size_t>(vocab_size_), 0);
}

void Sampler::apply_penalties(std::span<float> logits, std::span<const int32_t> prompt,
                              std::span<const int32_t> generated) {
  auto check_id = [&](int32_t id) {
    if (id < 0 || id >= vocab_size_) {
      throw Error("sampler: token id " + std::to_string(id) + " outside the vocabulary [0, " +
                  std::to_string(vocab_size_) + ")");
    }
  };
  // counts_ is all zeros between calls; each pass below restores that, so a call costs
  // O(sequence length), not O(vocab).
  if (params_.repetition_penalty != 1.0f) {
    const float penalty = params_.repetition_penalty;
    auto penalize_once = [&](int32_t id) {
      check_id(id);
      if (counts_[id] != 0) return;  // each distinct token is penalised once
      counts_[id] = 1;
      logits[id] = logits[id] > 0.0f ? logits[id] / penalty : logits[id] * penalty;
    };
    for (int32_t id : prompt) penalize_once(id);
    for (int32_t id : generated) penalize_once(id);
    for (int32_t id : prompt) counts_[id] = 0;
    for (int32_t id : generated) counts_[id] = 0;
  }
  if (params_.presence_penalty != 0.0f || params_.frequency_penalty != 0.0f) {
    for (int32_t id : generated) {
      check_id(id);
      ++counts_[id];
    }
    for (int32_t id : generated) {
      if (counts_[id] == 0) continue;  // already applied for this token
      logits[id] -= params_.presence_penalty + params_.frequency_penalty * static_cast<float>(counts_[id]);
      counts_[id] = 0;
    }
  }
}

int32_t Sampler::sample(std::span<float> logits, std::span<const int32_t> prompt,
                        std::span<const int32_t> generated) {
  if (logits.size() != static_cast<size_t>(vocab_size_)) {
    throw Error("sampler: got " + std::to_string(logits.size()) + " logits, vocabulary has " +
                std::to_string(vocab_size_));
  }
  apply_penalties(logits, prompt, generated);

  // A NaN would break the orderings below (undefined behaviour in nth_element); it can
  // never be the most likely token, so treat it as impossible.
  for (float& logit : logits) {
    if (std::isnan(logit)) logit = -std::numeric_limits<float>::infinity();
  }

  if (params_.temperature == 0.0f) {
    // std::max_element returns the first maximum: the lowest id on ties.
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }

  // Survivors of top-k as (logit, id), in increasing id order.
  auto& weights = weights_;
  weights.clear();
  const size_t vocab = logits.size();
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < vocab) {
    // The k-th largest logit: a size-k min-heap in one pass (most logits lose against
    // the heap's minimum with one comparison, so this is O(V) in practice; std::nth_element
    // measured ~4x slower on 128K logits). Then keep everything above it and, among the
    // logits equal to it, the lowest ids until there are k.
    const size_t k = static_cast<size_t>(params_.top_k);
    auto& heap = top_k_scratch_;
    heap.assign(logits.begin(), logits.begin() + k);
    std::make_heap(heap.begin(), heap.end(), std::greater<float>());
    for (size_t i = k; i < vocab; ++i) {
      if (logits[i] > heap.front()) {
        std::pop_heap(heap.begin(), heap.end(), std::greater<float>());
        heap.back() = logits[i];
        std::push_heap(heap.begin(), heap.end(), std::greater<float>());
      }
    }
    const float kth = heap.front();
    size_t ties_allowed =
        k - static_cast<size_t>(std::count_if(heap.begin(), heap.end(), [&](float l) { return l > kth; }));
    for (size_t i = 0; i < vocab; ++i) {
      if (logits[i] > kth || (logits[i] == kth && ties_allowed > 0 && ties_allowed--)) {
        weights.emplace_back(logits[i], static_cast<int32_t>(i));
      }
    }
  } else {
    weights.resize(vocab);
    for (size_t i = 0; i < vocab; ++i) weights[i] = {logits[i], static_cast<int32_t>(i)};
  }
  size_t count = weights.size();

  double max_logit = -std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < count; ++i) max_logit = std::max(max_logit, weights[i].first);
  if (max_logit == -std::numeric_limits<double>::infinity()) {
    // Every token is impossible (all masked): there is no distribution to sample from;
    // fall back to the lowest surviving id rather than dividing 0 by 0.
    return weights[0].second;
  }

  // Replace each logit by its unnormalised probability relative to the best token,
  // exp((l - max) / T), in double: it cannot overflow whatever the temperature, and the
  // best token has weight exactly 1. The ordering by weight equals the ordering by logit.
  const double inv_temperature = 1.0 / static_cast<double>(params_.temperature);
  double total = 0.0;
  for (size_t i = 0; i < count; ++i) {
    weights[i].first = std::exp((weights[i].first - max_logit) * inv_temperature);
    total += weights[i].first;
  }

  if (params_.top_p < 1.0f) {
    // The nucleus is the shortest best-first prefix whose mass reaches top_p * total.
    // Sorting the whole vocabulary is the expensive part, so first partition off the
    // tokens above a weight cutoff: if they already hold enough mass, the nucleus lies
    // among them (it is a best-first prefix) and only they need sorting. Cutoffs go down
    // until one works; 0 keeps everything.
    const double target = static_cast<double>(params_.top_p) * total;
    size_t front = 0;
    double front_mass = 0.0;
    for (double cutoff : {1e-2, 1e-4, 1e-7, 0.0}) {
      auto split = std::partition(weights.begin() + front, weights.begin() + count,
                                  [&](const auto& w) { return w.first >= cutoff; });
      const size_t end = static_cast<size_t>(split - weights.begin());
      for (size_t i = front; i < end; ++i) front_mass += weights[i].first;
      front = end;
      if (front_mass >= target) break;
    }
    // Ties broken by id so the kept set is the same whatever the partition did.
    std::sort(weights.begin(), weights.begin() + front, [](const auto& a, const auto& b) {
      if (a.first != b.first) return a.first > b.first;
      return a.second < b.second;
    });
    double cumulative = 0.0;
    size_t keep = 0;
    while (keep < front && cumulative < target) cumulative += weights[keep++].first;
    count = std::max<size_t>(keep, 1);
    total = keep > 0 ? cumulative : weights[0].first;
  }

  if (params_.min_p > 0.0f) {
    // prob / max_prob = weight (the best token has weight 1), so no normalisation is
    // needed, and the best token always survives.
    const double threshold = static_cast<double>(params_.min_p);
    size_t kept = 0;
    total = 0.0;
    for (size_t i = 0; i < count; ++i) {
      if (weights[i].first >= threshold) {
        weights[kept++] = weights[i];
        total += weights[i].first;
      }
    }
    count = kept;
  }

  // 53 random bits -> u in [0, 1): the same stream on every platform (the standard
  // distributions are implementation-defined).
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
  const double target = u * total;
  double cumulative = 0.0;
  for (size_t i = 0; i < count; ++i) {
    cumulative += weights[i].first;
    if (target < cumulative) return weights[i].second;
  }
  // Rounding can leave target a hair above the last partial sum: take the last token
  // with non-zero weight.
  for (size_t i = count; i-- > 0;) {
    if (weights[i].first > 0.0) return weights[i].second;
  }
  return weights[0].second;
}

StopChecker::StopChecker(std::vector<std::string> stop_strings) {
  // An empty stop string would match everywhere and stop before the first character.
  for (auto& stop : stop_strings) {
    if (!stop.empty()) stop_strings_.push_back(std::move(stop));
  }
}

std::string StopChecker::push(const std::string& text) {
  if (stopped_) return {};
  pending_ += text;

  // Earliest occurrence of any stop string. pending_ only ever holds text that might
  // start a stop string plus the new text, so the search stays short.
  size_t stop_at = std::string::npos;
  for (const auto& stop : stop_strings_) {
    const size_t at = pending_.find(stop);
    if (at < stop_at) {
      stop_at = at;
      stop_string_ = stop;
    }
  }
  if (stop_at != std::string::npos) {
    stopped_ = true;
    std::string out = pending_.substr(0, stop_at);
    pending_.clear();
    return out;
  }

  // Hold back the longest suffix that is a proper prefix of some stop string: a later push
  // could complete it. Everything before it can never be part of a stop string.
  size_t hold = 0;
  for (const auto& stop : stop_strings_) {
    const size_t longest = std::min(stop.size() - 1, pending_.size());
    for (size_t len = longest; len > hold; --len) {
      if (pending_.compare(pending_.size() - len, len, stop, 0, len) == 0) {
        hold = len;
        break;
      }
    }
  }
  std::string out = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return out;
}

std::string StopChecker::finish() {
  if (stopped_) return {};
  std::string out = std::move(pending_);
  pending_.clear();
  return out;
}

}  // namespace swiftkv::runtime
