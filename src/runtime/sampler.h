#pragma once
// Token sampling: greedy, temperature, top-k, top-p, min-p, repetition / presence /
// frequency penalties, seeded. Semantics follow vLLM: the repetition penalty applies to
// prompt and generated tokens (divide positive logits, multiply negative ones); presence
// and frequency penalties apply to generated tokens only; then temperature, then top-k,
// top-p and min-p filters. temperature == 0 means greedy (argmax after penalties, lowest
// id on ties).
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "io/model_config.h"

namespace swiftkv::runtime {

struct SamplingParams {
  float temperature = 1.0f;
  int32_t top_k = 0;  // 0 or -1: off
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  uint64_t seed = 0;
  void validate() const;  // throws swiftkv::Error naming the bad parameter
};

// The program's defaults (vLLM's) overridden by generation_config.json's; a request or the
// command line then overrides these (do_sample false means greedy).
SamplingParams default_sampling_params(const io::GenerationDefaults& defaults);

class Sampler {
 public:
  Sampler(const SamplingParams& params, int32_t vocab_size);
  // logits: one row of vocab_size (modified in place). prompt / generated: the sequence so far.
  // Returns the chosen token id. The random stream is seeded once from params.seed, so a
  // Sampler gives the same sequence of choices for the same inputs on every run.
  // Throws swiftkv::Error when logits.size() != vocab_size or a token id is out of range.
  int32_t sample(std::span<float> logits, std::span<const int32_t> prompt,
                 std::span<const int32_t> generated);

 private:
  void apply_penalties(std::span<float> logits, std::span<const int32_t> prompt,
                       std::span<const int32_t> generated);

  SamplingParams params_;
  int32_t vocab_size_;
  std::mt19937_64 rng_;
  std::vector<int32_t> counts_;                      // scratch, all zero between calls
  std::vector<float> top_k_scratch_;                 // scratch for the k-th largest logit
  std::vector<std::pair<double, int32_t>> weights_;  // scratch: (logit, then relative probability; id)
};

// Stop strings: feed decoded text as it streams; tells whether a stop string has appeared
// and how much of the text is safe to emit (text that might be the start of a stop string
// is held back). The stop string itself is never emitted.
class StopChecker {
 public:
  explicit StopChecker(std::vector<std::string> stop_strings);
  // Appends text; returns what may be emitted now.
  std::string push(const std::string& text);
  bool stopped() const { return stopped_; }
  const std::string& stop_string() const { return stop_string_; }  // the one that matched, once stopped
  std::string finish();  // at end of generation (no stop): the held-back text

 private:
  std::vector<std::string> stop_strings_;
  std::string pending_, stop_string_;
  bool stopped_ = false;
};

}  // namespace swiftkv::runtime
