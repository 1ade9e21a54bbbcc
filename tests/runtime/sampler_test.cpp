#include "runtime/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "common/error.h"

namespace swiftkv::runtime {
namespace {

int32_t sample_once(Sampler& sampler, std::vector<float> logits, const std::vector<int32_t>& prompt = {},
                    const std::vector<int32_t>& generated = {}) {
  return sampler.sample(logits, prompt, generated);
}

// Logits whose softmax is exactly `probs` (up to a constant shift).
std::vector<float> logits_from_probs(const std::vector<double>& probs) {
  std::vector<float> logits;
  for (double p : probs) logits.push_back(static_cast<float>(std::log(p)));
  return logits;
}

std::vector<double> normalized(std::vector<double> weights) {
  const double total = std::accumulate(weights.begin(), weights.end(), 0.0);
  for (double& w : weights) w /= total;
  return weights;
}

// Draws `draws` samples and checks that tokens with expected probability 0 never appear
// and that the frequencies of the others pass a chi-square test. The bound is far in the
// tail (df + 8 sqrt(2 df) is ~1e-6 for small df and tighter-than-needed for large df), so
// a correct sampler essentially never fails it, while a probability that is off by a
// percent or so gives a statistic in the hundreds at these draw counts.
void expect_distribution(const SamplingParams& params, const std::vector<float>& logits,
                         const std::vector<double>& expected, int draws) {
  ASSERT_EQ(logits.size(), expected.size());
  Sampler sampler(params, static_cast<int32_t>(logits.size()));
  std::vector<int64_t> counts(logits.size(), 0);
  for (int i = 0; i < draws; ++i) {
    const int32_t id = sample_once(sampler, logits);
    ASSERT_GE(id, 0);
    ASSERT_LT(id, static_cast<int32_t>(logits.size()));
    ++counts[id];
  }
  double chi_square = 0.0;
  int cells = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    if (expected[i] == 0.0) {
      EXPECT_EQ(counts[i], 0) << "token " << i << " is filtered out but was sampled";
      continue;
    }
    const double e = expected[i] * draws;
    chi_square += (counts[i] - e) * (counts[i] - e) / e;
    ++cells;
  }
  const double df = std::max(cells - 1, 1);
  EXPECT_LT(chi_square, df + 8.0 * std::sqrt(2.0 * df)) << "frequencies do not match the filtered softmax";
}

// Probabilities 0.4, 0.3, 0.15, 0.1, 0.05 placed at shuffled ids so that no filter can
// pass by accident of ordering.
const std::vector<double> kProbs = {0.1, 0.4, 0.05, 0.3, 0.15};

TEST(SamplerTest, GreedyPicksArgmaxAndLowestIdOnTies) {
  SamplingParams params;
  params.temperature = 0.0f;
  Sampler sampler(params, 6);
  EXPECT_EQ(sample_once(sampler, {0.0f, 1.0f, 3.0f, -2.0f, 2.9f, 0.5f}), 2);
  EXPECT_EQ(sample_once(sampler, {0.0f, 3.0f, 1.0f, 3.0f, 2.9f, 3.0f}), 1);
  EXPECT_EQ(sample_once(sampler, {-5.0f, -5.0f, -5.0f, -5.0f, -5.0f, -5.0f}), 0);
}

TEST(SamplerTest, PlainTemperatureOneMatchesSoftmax) {
  expect_distribution(SamplingParams{}, logits_from_probs(kProbs), kProbs, 200000);
}

TEST(SamplerTest, TemperatureSharpensAndFlattens) {
  for (float temperature : {0.5f, 2.0f}) {
    SamplingParams params;
    params.temperature = temperature;
    std::vector<double> expected;
    for (double p : kProbs) expected.push_back(std::pow(p, 1.0 / temperature));
    expect_distribution(params, logits_from_probs(kProbs), normalized(expected), 200000);
  }
}

TEST(SamplerTest, TopKKeepsTheKMostLikely) {
  SamplingParams params;
  params.top_k = 2;
  // Keeps 0.4 (id 1) and 0.3 (id 3): 4/7 and 3/7.
  expect_distribution(params, logits_from_probs(kProbs), {0, 4.0 / 7, 0, 3.0 / 7, 0}, 200000);
  params.top_k = 5;  // == vocab: off
  expect_distribution(params, logits_from_probs(kProbs), kProbs, 100000);
  params.top_k = -1;
  expect_distribution(params, logits_from_probs(kProbs), kProbs, 100000);
}

TEST(SamplerTest, TopKTiesKeepLowestIds) {
  SamplingParams params;
  params.top_k = 2;
  // Four equal logits: the two lowest ids survive, each with probability 1/2.
  expect_distribution(params, {1.0f, 0.0f, 1.0f, 1.0f, 1.0f}, {0.5, 0, 0.5, 0, 0}, 100000);
}

TEST(SamplerTest, TopPKeepsSmallestSetReachingP) {
  SamplingParams params;
  params.top_p = 0.75f;  // 0.4 + 0.3 = 0.7 < 0.75, + 0.15 = 0.85 >= 0.75
  expect_distribution(params, logits_from_probs(kProbs), normalized({0, 0.4, 0, 0.3, 0.15}), 200000);
  params.top_p = 0.5f;  // 0.4 < 0.5, 0.7 >= 0.5
  expect_distribution(params, logits_from_probs(kProbs), normalized({0, 0.4, 0, 0.3, 0}), 200000);
  params.top_p = 0.01f;  // the single most likely token always survives
  expect_distribution(params, logits_from_probs(kProbs), {0, 1, 0, 0, 0}, 10000);
}

TEST(SamplerTest, MinPDropsTokensBelowFractionOfMax) {
  SamplingParams params;
  params.min_p = 0.3f;  // threshold 0.12: keeps 0.4, 0.3, 0.15
  expect_distribution(params, logits_from_probs(kProbs), normalized({0, 0.4, 0, 0.3, 0.15}), 200000);
  params.min_p = 1.0f;  // only the max
  expect_distribution(params, logits_from_probs(kProbs), {0, 1, 0, 0, 0}, 10000);
}

TEST(SamplerTest, FiltersComposeAfterTemperature) {
  // temperature 2 -> weights sqrt(p): 0.632, 0.548, 0.387, 0.316, 0.224 (sum 2.107),
  // probs 0.300, 0.260, 0.184, 0.150, 0.106. top_k 4 drops 0.05 (id 2); renormalised over
  // the rest: 0.3357, 0.2907, 0.2053, 0.1679; top_p 0.6 keeps the first two (0.626), then
  // min_p 0.9 drops 0.3 (0.548/0.632 = 0.866 < 0.9), leaving only id 1.
  SamplingParams params;
  params.temperature = 2.0f;
  params.top_k = 4;
  params.top_p = 0.6f;
  expect_distribution(params, logits_from_probs(kProbs),
                      normalized({0, std::sqrt(0.4), 0, std::sqrt(0.3), 0}), 200000);
  params.min_p = 0.9f;
  expect_distribution(params, logits_from_probs(kProbs), {0, 1, 0, 0, 0}, 10000);
  params.min_p = 0.8f;  // 0.866 >= 0.8: both stay
  expect_distribution(params, logits_from_probs(kProbs),
                      normalized({0, std::sqrt(0.4), 0, std::sqrt(0.3), 0}), 200000);
}

// A straightforward full-sort implementation of the same semantics, to check the
// partial-sort fast paths on a vocabulary larger than their first sorted prefix.
std::vector<double> reference_distribution(const SamplingParams& params, const std::vector<float>& logits) {
  const size_t n = logits.size();
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  size_t keep = n;
  if (params.top_k > 0) keep = std::min<size_t>(keep, params.top_k);
  std::vector<double> weights(n, 0.0);
  for (size_t r = 0; r < keep; ++r) {
    weights[order[r]] =
        std::exp((static_cast<double>(logits[order[r]]) - logits[order[0]]) / params.temperature);
  }
  double total = 0.0;
  for (size_t r = 0; r < keep; ++r) total += weights[order[r]];
  double cumulative = 0.0;
  size_t nucleus = 0;
  while (nucleus < keep && cumulative < params.top_p * total) cumulative += weights[order[nucleus++]];
  for (size_t r = nucleus; r < n; ++r) weights[order[r]] = 0.0;
  for (size_t r = 0; r < n; ++r) {
    if (weights[order[r]] < params.min_p * weights[order[0]]) weights[order[r]] = 0.0;
  }
  return normalized(weights);
}

TEST(SamplerTest, LargeVocabularyMatchesFullSortReference) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> logits(1000);
  for (float& l : logits) l = normal(rng);
  struct Case {
    int32_t top_k;
    float top_p, min_p, temperature;
  };
  // top_p 0.95 at temperature 1.5 needs well over 256 tokens (the first sorted prefix).
  for (const Case& c : {Case{0, 0.95f, 0.0f, 1.5f}, Case{50, 0.8f, 0.0f, 1.0f}, Case{0, 0.9f, 0.2f, 0.7f},
                        Case{300, 1.0f, 0.05f, 1.0f}}) {
    SamplingParams params;
    params.top_k = c.top_k;
    params.top_p = c.top_p;
    params.min_p = c.min_p;
    params.temperature = c.temperature;
    SCOPED_TRACE("top_k " + std::to_string(c.top_k) + " top_p " + std::to_string(c.top_p) + " min_p " +
                 std::to_string(c.min_p));
    const auto expected = reference_distribution(params, logits);
    const auto support = std::count_if(expected.begin(), expected.end(), [](double p) { return p > 0; });
    EXPECT_GT(support, 1);
    expect_distribution(params, logits, expected, 40000);
  }
}

TEST(SamplerTest, LlamaSizeVocabularyStaysInNucleus) {
  // 128K vocabulary with a peaked distribution: every draw must come from the reference
  // nucleus (checks the fast path at the size it is written for).
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> logits(128256);
  for (float& l : logits) l = normal(rng);
  SamplingParams params;
  params.top_p = 0.9f;
  params.temperature = 0.8f;
  const auto expected = reference_distribution(params, logits);
  Sampler sampler(params, static_cast<int32_t>(logits.size()));
  for (int i = 0; i < 200; ++i) {
    const int32_t id = sample_once(sampler, logits);
    ASSERT_GT(expected[id], 0.0) << "draw " << i << " picked token " << id << " outside the nucleus";
  }
}

TEST(SamplerTest, RepetitionPenaltyDividesPositiveMultipliesNegative) {
  SamplingParams params;
  params.temperature = 0.0f;
  params.repetition_penalty = 2.0f;
  Sampler sampler(params, 5);
  std::vector<float> logits = {3.0f, -1.0f, 2.0f, 1.0f, 0.5f};
  const std::vector<int32_t> prompt = {0, 0, 1};
  const std::vector<int32_t> generated = {4, 0};
  // Penalised once per distinct token, from the prompt and the generation alike.
  EXPECT_EQ(sampler.sample(logits, prompt, generated), 2);
  EXPECT_FLOAT_EQ(logits[0], 1.5f);
  EXPECT_FLOAT_EQ(logits[1], -2.0f);
  EXPECT_FLOAT_EQ(logits[2], 2.0f);
  EXPECT_FLOAT_EQ(logits[3], 1.0f);
  EXPECT_FLOAT_EQ(logits[4], 0.25f);
}

TEST(SamplerTest, PresenceAndFrequencyApplyToGeneratedOnly) {
  SamplingParams params;
  params.temperature = 0.0f;
  params.presence_penalty = 0.5f;
  params.frequency_penalty = 0.25f;
  Sampler sampler(params, 5);
  std::vector<float> logits = {1.0f, 1.0f, 1.0f, 1.0f, 1.0f};
  const std::vector<int32_t> prompt = {2, 2, 2};
  const std::vector<int32_t> generated = {3, 1, 3, 3};
  EXPECT_EQ(sampler.sample(logits, prompt, generated), 0);
  EXPECT_FLOAT_EQ(logits[0], 1.0f);
  EXPECT_FLOAT_EQ(logits[1], 1.0f - 0.5f - 0.25f);
  EXPECT_FLOAT_EQ(logits[2], 1.0f);  // prompt-only token
  EXPECT_FLOAT_EQ(logits[3], 1.0f - 0.5f - 0.75f);
  EXPECT_FLOAT_EQ(logits[4], 1.0f);

  // Scratch state is reset between calls: the same call again gives the same result.
  std::vector<float> again = {1.0f, 1.0f, 1.0f, 1.0f, 1.0f};
  sampler.sample(again, prompt, generated);
  EXPECT_FLOAT_EQ(again[3], 1.0f - 0.5f - 0.75f);
}

TEST(SamplerTest, PenaltiesChangeGreedyChoice) {
  SamplingParams params;
  params.temperature = 0.0f;
  params.frequency_penalty = 1.0f;
  Sampler sampler(params, 3);
  EXPECT_EQ(sample_once(sampler, {2.0f, 1.5f, 0.0f}, {}, {0}), 1);
  EXPECT_EQ(sample_once(sampler, {2.0f, 1.5f, 0.0f}, {0}, {}), 0);  // prompt does not count
}

TEST(SamplerTest, SameSeedSameSequenceDifferentSeedDifferent) {
  std::vector<float> logits(100, 0.0f);  // uniform: 100^-50 chance two streams agree
  auto draw = [&](uint64_t seed) {
    SamplingParams params;
    params.seed = seed;
    params.top_p = 0.99f;
    Sampler sampler(params, 100);
    std::vector<int32_t> ids;
    for (int i = 0; i < 50; ++i) ids.push_back(sample_once(sampler, logits));
    return ids;
  };
  EXPECT_EQ(draw(42), draw(42));
  EXPECT_NE(draw(42), draw(43));
}

TEST(SamplerTest, RejectsInvalidParameters) {
  auto expect_error = [](SamplingParams params, const std::string& name, const std::string& value) {
    try {
      params.validate();
      ADD_FAILURE() << name << " = " << value << " was accepted";
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(name), std::string::npos) << message;
      EXPECT_NE(message.find(value), std::string::npos) << message;
    }
    EXPECT_THROW(Sampler(params, 10), Error);
  };
  SamplingParams p;
  p.temperature = -0.5f;
  expect_error(p, "temperature", "-0.5");
  p = {};
  p.temperature = NAN;
  expect_error(p, "temperature", "nan");
  p = {};
  p.top_p = 0.0f;
  expect_error(p, "top_p", "0");
  p = {};
  p.top_p = 1.5f;
  expect_error(p, "top_p", "1.5");
  p = {};
  p.min_p = -0.25f;
  expect_error(p, "min_p", "-0.25");
  p = {};
  p.min_p = 2.0f;
  expect_error(p, "min_p", "2");
  p = {};
  p.top_k = -2;
  expect_error(p, "top_k", "-2");
  p = {};
  p.repetition_penalty = 0.0f;
  expect_error(p, "repetition_penalty", "0");

  SamplingParams valid;
  valid.temperature = 0.0f;
  valid.top_p = 1.0f;
  valid.min_p = 1.0f;
  valid.top_k = -1;
  EXPECT_NO_THROW(valid.validate());
}

TEST(SamplerTest, RejectsWrongLogitCountAndBadTokenIds) {
  Sampler sampler(SamplingParams{}, 4);
  std::vector<float> short_logits(3, 0.0f);
  EXPECT_THROW(sampler.sample(short_logits, {}, {}), Error);
  SamplingParams penalised;
  penalised.repetition_penalty = 1.1f;
  Sampler penalising(penalised, 4);
  std::vector<float> logits(4, 0.0f);
  const std::vector<int32_t> bad = {4};
  EXPECT_THROW(penalising.sample(logits, bad, {}), Error);
}

// ---- StopChecker ----

std::string run_stop(StopChecker& checker, const std::vector<std::string>& pieces) {
  std::string out;
  for (const auto& piece : pieces) out += checker.push(piece);
  return out + checker.finish();
}

TEST(StopCheckerTest, HoldsBackOnlyAPossibleStart) {
  StopChecker checker({"STOP"});
  EXPECT_EQ(checker.push("abc ST"), "abc ");
  EXPECT_EQ(checker.push("O"), "");
  EXPECT_FALSE(checker.stopped());
  EXPECT_EQ(checker.push("Px tail"), "");
  EXPECT_TRUE(checker.stopped());
  EXPECT_EQ(checker.push("more"), "");
  EXPECT_EQ(checker.finish(), "");
}

TEST(StopCheckerTest, FalseStartIsReleased) {
  StopChecker checker({"STOP"});
  EXPECT_EQ(checker.push("ST"), "");
  EXPECT_EQ(checker.push("Ox"), "STOx");
  EXPECT_FALSE(checker.stopped());
  EXPECT_EQ(checker.push("S"), "");
  EXPECT_EQ(checker.finish(), "S");
}

TEST(StopCheckerTest, StopStringSplitAcrossManyPushes) {
  StopChecker checker({"</end>"});
  std::vector<std::string> pieces;
  for (char c : std::string("hello</end>world")) pieces.emplace_back(1, c);
  EXPECT_EQ(run_stop(checker, pieces), "hello");
  EXPECT_TRUE(checker.stopped());
}

TEST(StopCheckerTest, OverlappingPrefixAndEarliestOfSeveral) {
  StopChecker overlapping({"aab"});
  EXPECT_EQ(run_stop(overlapping, {"a", "a", "a", "b", "c"}), "a");
  EXPECT_TRUE(overlapping.stopped());

  StopChecker several({"xyz", "b"});
  EXPECT_EQ(run_stop(several, {"abxyz"}), "a");
  StopChecker several_split({"xyz", "yq"});
  EXPECT_EQ(run_stop(several_split, {"0x", "y", "q"}), "0x");
}

TEST(StopCheckerTest, NoStopStringsPassesEverythingThrough) {
  StopChecker checker({});
  EXPECT_EQ(checker.push("abc"), "abc");
  StopChecker empty_string({""});
  EXPECT_EQ(empty_string.push("abc"), "abc");
  EXPECT_FALSE(empty_string.stopped());
}

TEST(StopCheckerTest, RandomSplitsEqualWholeTextCut) {
  std::mt19937 rng(3);
  const std::vector<std::string> stops = {"abc", "cab", "bbbb"};
  for (int trial = 0; trial < 2000; ++trial) {
    std::string text;
    const int length = 1 + static_cast<int>(rng() % 30);
    for (int i = 0; i < length; ++i) text += "abc"[rng() % 3];
    size_t cut = std::string::npos;
    for (const auto& s : stops) cut = std::min(cut, text.find(s));
    std::vector<std::string> pieces;
    for (size_t pos = 0; pos < text.size();) {
      const size_t n = std::min<size_t>(text.size() - pos, rng() % 4);
      pieces.push_back(text.substr(pos, n));  // empty pieces too
      pos += n;
    }
    StopChecker checker(stops);
    std::string out;
    for (const auto& piece : pieces) {
      const std::string emitted = checker.push(piece);
      out += emitted;
      // Never emits anything a stop string could still claim.
      ASSERT_EQ(text.compare(0, out.size(), out), 0) << text;
      ASSERT_LE(out.size(), cut == std::string::npos ? text.size() : cut) << text;
    }
    out += checker.finish();
    EXPECT_EQ(out, text.substr(0, cut)) << text;
    EXPECT_EQ(checker.stopped(), cut != std::string::npos) << text;
  }
}

}  // namespace
}  // namespace swiftkv::runtime
