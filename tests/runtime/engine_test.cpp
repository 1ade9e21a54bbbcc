// The serving engine on a real model: stories260K (and a SwiftKV conversion of it, M = 3 of 5
// layers). Many concurrent greedy requests must give exactly what each gives alone, computed
// here independently (one sequence, its own cache, argmax), whatever the batching does:
// chunked prefill, preemption, prefix-cache hits, SwiftKV on or off.
#include "runtime/engine.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "expect_error.h"
#include "io/convert.h"
#include "io/llama2c.h"
#include "kernels/gemm.h"
#include "runtime/eval.h"
#include "runtime/scoring.h"
#include "test_paths.h"

namespace swiftkv::runtime {
namespace {

namespace fs = std::filesystem;
using model::Path;
using swiftkv::testing::expect_error;
using swiftkv::testing::shared_dir;

// What a request's events added up to.
struct Collected {
  std::vector<int32_t> tokens;
  std::string text;
  std::vector<TokenLogprob> logprobs, prompt_logprobs;
  FinishReason finish_reason = FinishReason::None;
  std::string stop_reason;
  int64_t cached_prompt_tokens = 0;
  int events = 0, final_events = 0;
};

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    kernels::set_num_threads(2);
    dir_ = swiftkv::testing::fresh_temp_dir("engine_" + std::to_string(::getpid()));
    io::import_llama2c(shared_dir() / "data/stories260K/stories260K.bin",
                       shared_dir() / "data/stories260K/tok512.bin", dir_ / "base");
    io::ConvertOptions convert;
    convert.swiftkv_layers = 3;  // of 5: prompt tokens skip layers 3 and 4
    io::convert_to_swiftkv(dir_ / "base", dir_ / "swiftkv", convert);
    model::LoadOptions load;
    load.weight_type = kernels::WeightType::F32;
    load.load_teacher = true;  // the same model runs SwiftKV off (Path::Teacher)
    model_ = model::Model::load(dir_ / "swiftkv", load).release();
    // AcrossKV: M = 1 and the 4 later layers in 2 groups, each group one physical cache.
    convert.swiftkv_layers = 1;
    convert.group_size = 2;
    io::convert_to_swiftkv(dir_ / "base", dir_ / "across_kv", convert);
    across_kv_model_ = model::Model::load(dir_ / "across_kv", load).release();
    tokenizer_ = new tokenizer::Tokenizer(tokenizer::Tokenizer::from_dir(dir_ / "swiftkv"));
    const std::string text = read_eval_text(shared_dir() / "data/tinystories/tinystories_dev.txt");
    text_tokens_ = tokenizer_->encode(text.substr(0, text.find("\n\n", 8000)), /*add_special_tokens=*/false);
  }
  static void TearDownTestSuite() {
    delete model_;
    delete across_kv_model_;
    delete tokenizer_;
    fs::remove_all(dir_);
  }

  // BOS, then `length - 1` tokens of the dev text from `offset`.
  static std::vector<int32_t> prompt(size_t length, size_t offset) {
    std::vector<int32_t> tokens{*tokenizer_->bos_id()};
    tokens.insert(tokens.end(), text_tokens_.begin() + offset, text_tokens_.begin() + offset + length - 1);
    return tokens;
  }
  static EngineRequest greedy(std::vector<int32_t> prompt, int32_t max_tokens) {
    EngineRequest request;
    request.prompt = std::move(prompt);
    request.max_tokens = max_tokens;
    request.sampling.temperature = 0;
    return request;
  }
  // 16 requests, prompts of 1 to 286 tokens from different places of the text, 20 to 40 new tokens.
  static std::vector<EngineRequest> sixteen_requests() {
    std::vector<EngineRequest> requests;
    for (size_t i = 0; i < 16; ++i)
      requests.push_back(greedy(prompt(1 + 19 * i, 37 * i), 20 + static_cast<int32_t>(i * 7 % 21)));
    return requests;
  }

  // The reference: one sequence with a cache of its own, argmax until max_tokens or an eos id.
  static std::vector<int32_t> alone(const model::Model& model, const EngineRequest& request, Path path,
                                    model::KvDType kv_dtype = model::KvDType::F32) {
    std::vector<int32_t> eos(model.config().eos_token_ids.begin(), model.config().eos_token_ids.end());
    for (int32_t id : tokenizer_->eos_ids()) eos.push_back(id);
    model::KvCache cache =
        model.make_cache(static_cast<int64_t>(request.prompt.size()) + request.max_tokens, path, kv_dtype);
    std::vector<float> logits = model.forward(request.prompt, 0, cache, path, model::Logits::Last);
    std::vector<int32_t> generated;
    for (int64_t position = static_cast<int64_t>(request.prompt.size());; ++position) {
      const int32_t token =
          static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      generated.push_back(token);
      if (static_cast<int32_t>(generated.size()) == request.max_tokens ||
          std::find(eos.begin(), eos.end(), token) != eos.end())
        return generated;
      logits = model.forward(std::span<const int32_t>(&token, 1), position, cache, path, model::Logits::Last);
    }
  }

  static EngineOptions f32_options(Path path) {
    EngineOptions options;
    options.path = path;
    options.kv_dtype = model::KvDType::F32;
    return options;
  }
  static int64_t bytes_for_blocks(const EngineOptions& options, int64_t blocks,
                                  const model::Model& model = *model_) {
    return blocks * options.block_size * model.kv_bytes_per_token(options.path, options.kv_dtype);
  }

  // Adds requests, collecting their events into `results` (by position in `requests`).
  static std::vector<uint64_t> add_all(Engine& engine, const std::vector<EngineRequest>& requests,
                                       std::map<uint64_t, Collected>& results) {
    std::vector<uint64_t> ids;
    for (const EngineRequest& request : requests)
      ids.push_back(engine.add_request(request, [&results](const RequestOutput& output) {
        Collected& c = results[output.request_id];
        c.tokens.insert(c.tokens.end(), output.tokens.begin(), output.tokens.end());
        c.text += output.text;
        c.logprobs.insert(c.logprobs.end(), output.logprobs.begin(), output.logprobs.end());
        if (!output.prompt_logprobs.empty()) c.prompt_logprobs = output.prompt_logprobs;
        c.cached_prompt_tokens = output.cached_prompt_tokens;
        ++c.events;
        if (output.finish_reason != FinishReason::None) {
          c.finish_reason = output.finish_reason;
          c.stop_reason = output.stop_reason;
          ++c.final_events;
        }
      }));
    return ids;
  }
  static void run_until_idle(Engine& engine) {
    for (int steps = 0; engine.step(); ++steps) ASSERT_LT(steps, 100000);
  }
  // Every request's tokens equal its reference, and it finished exactly once.
  static void expect_as_alone(const model::Model& model, const std::vector<EngineRequest>& requests,
                              const std::vector<uint64_t>& ids, std::map<uint64_t, Collected>& results,
                              Path path, model::KvDType kv_dtype = model::KvDType::F32) {
    for (size_t i = 0; i < requests.size(); ++i) {
      const Collected& got = results[ids[i]];
      EXPECT_EQ(got.tokens, alone(model, requests[i], path, kv_dtype))
          << "request " << i << ", prompt of " << requests[i].prompt.size() << " tokens";
      EXPECT_EQ(got.final_events, 1) << "request " << i;
      EXPECT_NE(got.finish_reason, FinishReason::Abort) << "request " << i;
    }
  }

  static fs::path dir_;
  static model::Model *model_, *across_kv_model_;
  static tokenizer::Tokenizer* tokenizer_;
  static std::vector<int32_t> text_tokens_;
};
fs::path EngineTest::dir_;
model::Model* EngineTest::model_ = nullptr;
model::Model* EngineTest::across_kv_model_ = nullptr;
tokenizer::Tokenizer* EngineTest::tokenizer_ = nullptr;
std::vector<int32_t> EngineTest::text_tokens_;

// One batching regime of the 16-request comparison.
struct BatchingCase {
  const char* name;
  Path path;
  int64_t max_num_batched_tokens;
  int64_t kv_blocks;  // 0: the default budget
  bool prefix_caching;
  bool across_kv = false;  // the M = 1, G = 2 model
  model::KvDType kv_dtype = model::KvDType::F32;
};

class ConcurrentGreedy : public EngineTest, public ::testing::WithParamInterface<BatchingCase> {};

TEST_P(ConcurrentGreedy, SixteenRequestsEqualEachAlone) {
  const BatchingCase& c = GetParam();
  const model::Model& model = c.across_kv ? *across_kv_model_ : *model_;
  EngineOptions options = f32_options(c.path);
  options.kv_dtype = c.kv_dtype;
  options.max_num_batched_tokens = c.max_num_batched_tokens;
  options.enable_prefix_caching = c.prefix_caching;
  if (c.kv_blocks > 0) options.kv_cache_bytes = bytes_for_blocks(options, c.kv_blocks, model);
  Engine engine(model, *tokenizer_, options);
  const std::vector<EngineRequest> requests = sixteen_requests();
  std::map<uint64_t, Collected> results;
  const std::vector<uint64_t> ids = add_all(engine, requests, results);
  EXPECT_EQ(engine.stats().waiting, 16);
  run_until_idle(engine);
  expect_as_alone(model, requests, ids, results, c.path, c.kv_dtype);

  const EngineStats stats = engine.stats();
  EXPECT_EQ(stats.running + stats.waiting, 0);
  EXPECT_EQ(stats.kv_blocks_used, 0);
  EXPECT_GE(stats.prompt_tokens, 16 + 19 * 120);  // every prompt token at least once
  int64_t generated = 0;
  for (const auto& [id, collected] : results) generated += static_cast<int64_t>(collected.tokens.size());
  EXPECT_EQ(stats.generation_tokens, generated);
  EXPECT_GT(generated, 16 * 15);  // mostly full-length answers, not eos straight away
  // SwiftKV: prompt tokens without logits stop after layer M; SwiftKV off: none do.
  if (c.path == Path::SwiftKV)
    EXPECT_GT(stats.prompt_tokens_skipped, stats.prompt_tokens / 2);
  else
    EXPECT_EQ(stats.prompt_tokens_skipped, 0);
  if (c.kv_blocks > 0) {
    EXPECT_GT(stats.preemptions, 0);
  } else {
    EXPECT_EQ(stats.preemptions, 0);
  }
  if (!c.prefix_caching) {
    EXPECT_EQ(stats.prefix_cache_queries, 0);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Batching, ConcurrentGreedy,
    ::testing::Values(BatchingCase{"SwiftKV", Path::SwiftKV, 2048, 0, true},
                      BatchingCase{"SwiftKVOff", Path::Teacher, 2048, 0, false},
                      BatchingCase{"ChunkedPrefill16", Path::SwiftKV, 16, 0, true},
                      // The longest request alone needs 21 blocks of 16; all of them ~180.
                      BatchingCase{"PreemptionSwiftKV", Path::SwiftKV, 512, 40, true},
                      BatchingCase{"PreemptionSwiftKVOffChunked", Path::Teacher, 64, 30, false},
                      BatchingCase{"AcrossKvPreemptionChunked", Path::SwiftKV, 64, 30, true, true},
                      // The reference's own cache stores K/V in the same dtype.
                      BatchingCase{"Bf16Kv", Path::SwiftKV, 2048, 0, true, false, model::KvDType::BF16},
                      BatchingCase{"Int8KvPreemptionChunked", Path::SwiftKV, 64, 30, true, false,
                                   model::KvDType::INT8}),
    [](const ::testing::TestParamInfo<BatchingCase>& info) { return std::string(info.param.name); });

TEST_F(EngineTest, AcrossKvPoolHoldsOneCacheForEachGroup) {
  // Layer 0, then one cache per group of two later layers: 3 caches; SwiftKV off needs all 5.
  const auto& config = across_kv_model_->config();
  const int64_t cache_token_bytes =
      2 * config.num_key_value_heads * config.head_dim * static_cast<int64_t>(sizeof(float));
  const int64_t budget = int64_t{1} << 20;
  for (auto [path, caches] : {std::pair{Path::SwiftKV, 3}, std::pair{Path::Teacher, 5}}) {
    EngineOptions options = f32_options(path);
    options.kv_cache_bytes = budget;
    Engine engine(*across_kv_model_, *tokenizer_, options);
    EXPECT_EQ(engine.num_blocks(), budget / (16 * caches * cache_token_bytes)) << caches << " caches";
  }
}

TEST_F(EngineTest, PrefixCacheHitsGiveTheSameOutputs) {
  Engine engine(*model_, *tokenizer_, f32_options(Path::SwiftKV));
  // A 200-token prompt, then seven sharing its first 40 to 160 tokens and going their own way.
  const std::vector<int32_t> shared = prompt(200, 0);
  std::vector<EngineRequest> requests{greedy(shared, 24)};
  for (size_t i = 1; i < 8; ++i) {
    std::vector<int32_t> tokens(shared.begin(), shared.begin() + 20 + 20 * i);
    tokens.insert(tokens.end(), text_tokens_.begin() + 400 + 30 * i, text_tokens_.begin() + 420 + 30 * i);
    requests.push_back(greedy(tokens, 24));
  }
  std::map<uint64_t, Collected> results;
  // The first prompt is computed (and its full blocks cached) before the others arrive.
  std::vector<uint64_t> ids = add_all(engine, {requests[0]}, results);
  engine.step();
  for (uint64_t id :
       add_all(engine, std::vector<EngineRequest>(requests.begin() + 1, requests.end()), results))
    ids.push_back(id);
  run_until_idle(engine);
  expect_as_alone(*model_, requests, ids, results, Path::SwiftKV);
  EXPECT_EQ(results[ids[0]].cached_prompt_tokens, 0);
  int64_t hits = 0;
  for (size_t i = 1; i < 8; ++i) {
    const int64_t full_shared_blocks = (20 + 20 * static_cast<int64_t>(i)) / 16;
    EXPECT_EQ(results[ids[i]].cached_prompt_tokens, 16 * full_shared_blocks) << "request " << i;
    hits += 16 * full_shared_blocks;
  }
  const EngineStats stats = engine.stats();
  EXPECT_EQ(stats.prefix_cache_hits, hits);

  // After every request finished, their cached blocks are still there for a new one; a prompt
  // of whole blocks still computes its last block (its last token's logits are needed).
  std::vector<EngineRequest> again{greedy(std::vector<int32_t>(shared.begin(), shared.begin() + 176), 10)};
  std::vector<uint64_t> again_ids = add_all(engine, again, results);
  run_until_idle(engine);
  expect_as_alone(*model_, again, again_ids, results, Path::SwiftKV);
  EXPECT_EQ(results[again_ids[0]].cached_prompt_tokens, 160);
  EXPECT_EQ(engine.stats().prompt_tokens, stats.prompt_tokens + static_cast<int64_t>(again[0].prompt.size()) -
                                              results[again_ids[0]].cached_prompt_tokens);
}

TEST_F(EngineTest, CancelEndsARequestAtOnceAndFreesItsBlocks) {
  EngineOptions options = f32_options(Path::SwiftKV);
  options.max_num_seqs = 2;  // the third and fourth wait
  Engine engine(*model_, *tokenizer_, options);
  std::vector<EngineRequest> requests;
  for (size_t i = 0; i < 4; ++i) requests.push_back(greedy(prompt(50 + 10 * i, 20 * i), 40));
  std::map<uint64_t, Collected> results;
  const std::vector<uint64_t> ids = add_all(engine, requests, results);
  for (int i = 0; i < 3; ++i) engine.step();
  EXPECT_GT(engine.stats().kv_blocks_used, 0);
  engine.cancel(ids[0]);  // running
  engine.cancel(ids[3]);  // waiting
  engine.cancel(12345);   // unknown: ignored
  engine.step();
  for (uint64_t id : {ids[0], ids[3]}) {
    EXPECT_EQ(results[id].finish_reason, FinishReason::Abort);
    EXPECT_EQ(results[id].final_events, 1);
  }
  EXPECT_EQ(results[ids[0]].tokens.size(), 3u);
  EXPECT_TRUE(results[ids[3]].tokens.empty());
  EXPECT_EQ(engine.stats().running, 2);  // the third was admitted in the freed place
  engine.cancel(ids[1]);
  engine.cancel(ids[2]);
  engine.cancel(ids[0]);  // finished already: no second event
  run_until_idle(engine);
  const EngineStats stats = engine.stats();
  EXPECT_EQ(stats.running + stats.waiting, 0);
  EXPECT_EQ(stats.kv_blocks_used, 0);
  for (uint64_t id : ids) {
    EXPECT_EQ(results[id].final_events, 1);
    EXPECT_EQ(results[id].finish_reason, FinishReason::Abort);
  }
}

TEST_F(EngineTest, RefusesRequestsThatCannotFitWithTheReason) {
  EngineOptions options = f32_options(Path::SwiftKV);
  options.max_model_len = 200;
  options.kv_cache_bytes = bytes_for_blocks(options, 13);  // a request of 13 * 16 + 1 tokens at most
  Engine engine(*model_, *tokenizer_, options);
  EXPECT_EQ(engine.num_blocks(), 13);
  EXPECT_EQ(engine.options().max_model_len, 200);
  auto add = [&](EngineRequest request) { engine.add_request(std::move(request), {}); };
  expect_error([&] { add(greedy(prompt(190, 0), 20)); }, {"210 tokens", "maximum context length is 200"});
  expect_error([&] { add(greedy({}, 20)); }, {"prompt is empty"});
  expect_error([&] { add(greedy({1, 512}, 20)); }, {"512", "outside the vocabulary"});
  expect_error([&] { add(greedy({1}, 0)); }, {"max_tokens"});
  EngineRequest hot = greedy({1}, 5);
  hot.sampling.temperature = -1;
  expect_error([&] { add(hot); }, {"temperature"});
  EXPECT_EQ(engine.stats().waiting, 0);

  options.kv_cache_bytes = bytes_for_blocks(options, 1) - 1;
  expect_error([&] { Engine(*model_, *tokenizer_, options); }, {"holds no block of 16 tokens"});
  options.kv_cache_bytes = 0;
  options.max_model_len = 100000;
  expect_error([&] { Engine(*model_, *tokenizer_, options); }, {"max_model_len", "512"});
}

// A max_model_len the pool cannot hold would be advertised and then refused forever.
TEST_F(EngineTest, MaxModelLenMustFitInTheKvPool) {
  EngineOptions options = f32_options(Path::SwiftKV);
  options.kv_cache_bytes = bytes_for_blocks(options, 8);  // a request of 8 * 16 + 1 tokens at most
  options.max_model_len = 130;
  expect_error([&] { Engine(*model_, *tokenizer_, options); },
               {"max_model_len 130", "at most 129 tokens", "--kv-cache-memory", "--max-model-len"});
  options.max_model_len = 129;
  EXPECT_EQ(Engine(*model_, *tokenizer_, options).options().max_model_len, 129);
  // Defaulted: the model's 512 shrinks to what the pool holds, and such a request runs.
  options.max_model_len = 0;
  Engine engine(*model_, *tokenizer_, options);
  EXPECT_EQ(engine.options().max_model_len, 129);
  std::map<uint64_t, Collected> results;
  EngineRequest full_length = greedy(prompt(100, 0), 29);
  full_length.ignore_eos = true;
  const uint64_t id = add_all(engine, {full_length}, results)[0];
  run_until_idle(engine);
  EXPECT_EQ(results[id].tokens.size(), 29u);
}

TEST_F(EngineTest, PromptLogprobsEqualWhatEvalComputes) {
  EngineOptions options = f32_options(Path::SwiftKV);
  options.max_num_batched_tokens = 16;  // the prompt in several chunks
  Engine engine(*model_, *tokenizer_, options);
  const std::vector<int32_t> tokens = prompt(120, 5);
  std::map<uint64_t, Collected> results;
  // The same prompt ran before: a prefix-cache match exists, but prompt logprobs must not use it.
  add_all(engine, {greedy(tokens, 2)}, results);
  run_until_idle(engine);
  EngineRequest request = greedy(tokens, 5);
  request.prompt_logprobs = true;
  request.logprobs = 3;
  const uint64_t id = add_all(engine, {request}, results)[0];
  run_until_idle(engine);
  const Collected& got = results[id];
  EXPECT_EQ(got.cached_prompt_tokens, 0);
  EXPECT_EQ(got.tokens, alone(*model_, request, Path::SwiftKV));

  const std::vector<double> expected = token_logprobs(*model_, tokens, Path::SwiftKV);
  ASSERT_EQ(got.prompt_logprobs.size(), tokens.size());
  EXPECT_EQ(got.prompt_logprobs[0].token, tokens[0]);
  EXPECT_TRUE(std::isnan(got.prompt_logprobs[0].logprob));
  for (size_t t = 1; t < tokens.size(); ++t) {
    const TokenLogprob& entry = got.prompt_logprobs[t];
    EXPECT_EQ(entry.token, tokens[t]);
    EXPECT_NEAR(entry.logprob, expected[t - 1], 1e-4) << "position " << t;
    ASSERT_EQ(entry.top.size(), 3u);
    EXPECT_GE(entry.top[0].second, entry.top[1].second);
    EXPECT_GE(entry.top[1].second, entry.top[2].second);
    EXPECT_GE(entry.top[0].second, entry.logprob);
  }
  // Greedy: each chosen token is the most likely one, with its own log-probability.
  ASSERT_EQ(got.logprobs.size(), got.tokens.size());
  for (size_t i = 0; i < got.tokens.size(); ++i) {
    EXPECT_EQ(got.logprobs[i].token, got.tokens[i]);
    EXPECT_EQ(got.logprobs[i].top[0].first, got.tokens[i]);
    EXPECT_FLOAT_EQ(got.logprobs[i].top[0].second, got.logprobs[i].logprob);
    EXPECT_LT(got.logprobs[i].logprob, 0);
  }
}

TEST_F(EngineTest, SeededSamplingGivesTheSameTokensBatchedAsAlone) {
  std::vector<EngineRequest> requests;
  for (size_t i = 0; i < 6; ++i) {
    EngineRequest request = greedy(prompt(10 + 40 * i, 11 * i), 30);
    request.sampling.temperature = 0.9f;
    request.sampling.top_p = 0.95f;
    request.sampling.seed = 1000 + i;
    requests.push_back(request);
  }
  Engine batched(*model_, *tokenizer_, f32_options(Path::SwiftKV));
  std::map<uint64_t, Collected> together;
  const std::vector<uint64_t> ids = add_all(batched, requests, together);
  run_until_idle(batched);
  bool any_differs_from_greedy = false;
  for (size_t i = 0; i < requests.size(); ++i) {
    Engine single(*model_, *tokenizer_, f32_options(Path::SwiftKV));
    std::map<uint64_t, Collected> apart;
    const uint64_t id = add_all(single, {requests[i]}, apart)[0];
    run_until_idle(single);
    EXPECT_EQ(together[ids[i]].tokens, apart[id].tokens) << "request " << i;
    EXPECT_EQ(together[ids[i]].text, apart[id].text) << "request " << i;
    any_differs_from_greedy =
        any_differs_from_greedy || apart[id].tokens != alone(*model_, requests[i], Path::SwiftKV);
  }
  EXPECT_TRUE(any_differs_from_greedy) << "the sampling parameters did nothing";
}

TEST_F(EngineTest, StopStringEndsTheRequestWithoutShowingIt) {
  Engine engine(*model_, *tokenizer_, f32_options(Path::SwiftKV));
  std::map<uint64_t, Collected> results;
  const EngineRequest free_run = greedy(prompt(30, 3), 40);
  const uint64_t first = add_all(engine, {free_run}, results)[0];
  run_until_idle(engine);
  const std::string text = results[first].text;
  ASSERT_GT(text.size(), 30u);
  EXPECT_EQ(results[first].finish_reason, FinishReason::Length);
  EngineRequest stopped = free_run;
  stopped.stop = {"\u00ff never", text.substr(12, 6)};
  const uint64_t second = add_all(engine, {stopped}, results)[0];
  run_until_idle(engine);
  EXPECT_EQ(results[second].finish_reason, FinishReason::Stop);
  EXPECT_EQ(results[second].stop_reason, text.substr(12, 6));
  EXPECT_EQ(results[second].text, text.substr(0, text.find(text.substr(12, 6))));
}

TEST_F(EngineTest, BackgroundLoopServesRequestsFromOtherThreads) {
  Engine engine(*model_, *tokenizer_, f32_options(Path::SwiftKV));
  engine.start();
  const std::vector<EngineRequest> requests = sixteen_requests();
  std::mutex mutex;
  std::condition_variable finished;
  std::map<uint64_t, std::vector<int32_t>> tokens;
  size_t done = 0;
  std::vector<uint64_t> ids(requests.size());
  auto submit = [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i)
      ids[i] = engine.add_request(requests[i], [&](const RequestOutput& output) {
        std::lock_guard<std::mutex> lock(mutex);
        auto& mine = tokens[output.request_id];
        mine.insert(mine.end(), output.tokens.begin(), output.tokens.end());
        if (output.finish_reason != FinishReason::None) {
          ++done;
          finished.notify_all();
        }
      });
  };
  std::thread other(submit, 0, 8);
  submit(8, 16);
  other.join();
  {
    std::unique_lock<std::mutex> lock(mutex);
    ASSERT_TRUE(finished.wait_for(lock, std::chrono::seconds(60), [&] { return done == requests.size(); }));
  }
  engine.stop();
  for (size_t i = 0; i < requests.size(); ++i)
    EXPECT_EQ(tokens[ids[i]], alone(*model_, requests[i], Path::SwiftKV)) << "request " << i;
  EXPECT_EQ(engine.stats().kv_blocks_used, 0);
}

TEST_F(EngineTest, UnfinishedRequestsGetAnAbortWhenTheEngineGoes) {
  std::map<uint64_t, Collected> results;
  {
    Engine engine(*model_, *tokenizer_, f32_options(Path::SwiftKV));
    add_all(engine, {greedy(prompt(20, 0), 30), greedy(prompt(40, 0), 30)}, results);
    engine.step();
    add_all(engine, {greedy(prompt(30, 0), 30)}, results);  // never stepped
  }
  ASSERT_EQ(results.size(), 3u);
  for (const auto& [id, collected] : results) {
    EXPECT_EQ(collected.final_events, 1);
    EXPECT_EQ(collected.finish_reason, FinishReason::Abort);
  }
}

}  // namespace
}  // namespace swiftkv::runtime
