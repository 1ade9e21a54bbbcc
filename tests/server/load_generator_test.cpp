// The `bench serve` load generator's parts: statistics on hand-computed inputs, SSE parsing and request
// timing on synthetic byte streams, arrival schedules and prompts (whole runs: load_generator_run_test.cpp).
#include "server/load_generator.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <numeric>
#include <set>

#include "expect_error.h"
#include "server/fake_openai_server.h"
#include "test_paths.h"
#include "tokenizer/tokenizer.h"

namespace swiftkv::server {
namespace {

using swiftkv::testing::expect_error;
using swiftkv::testing::token_event;

// ---- Statistics ----

TEST(LoadGeneratorStats, PercentilesInterpolateBetweenRanksLikeNumpy) {
  const std::vector<double> values = {100, 3, 1, 4, 2};             // sorted: 1 2 3 4 100
  EXPECT_NEAR(percentile(values, 99), 4 + 0.96 * (100 - 4), 1e-9);  // rank 0.99 * 4 = 3.96
  EXPECT_DOUBLE_EQ(percentile(values, 50), 3);
  EXPECT_DOUBLE_EQ(percentile({4, 1, 3, 2}, 50), 2.5);  // rank 1.5: halfway between 2 and 3
  EXPECT_DOUBLE_EQ(percentile({4, 1, 3, 2}, 0), 1);
  EXPECT_DOUBLE_EQ(percentile({4, 1, 3, 2}, 100), 4);
  EXPECT_DOUBLE_EQ(percentile({7}, 99), 7);
  const Summary summary = summarize(values);
  EXPECT_DOUBLE_EQ(summary.mean, 22);  // 110 / 5
  EXPECT_DOUBLE_EQ(summary.median, 3);
  EXPECT_NEAR(summary.p99, 96.16, 1e-9);
  const Summary none = summarize({});
  EXPECT_EQ(none.mean, 0);
  EXPECT_EQ(none.p99, 0);
}

RequestResult finished(double ttft_s, double latency_s, int64_t output_tokens, int64_t prompt_tokens,
                       std::vector<double> itls_s) {
  RequestResult result;
  result.success = true;
  result.ttft_s = ttft_s;
  result.latency_s = latency_s;
  result.output_tokens = output_tokens;
  result.prompt_tokens = prompt_tokens;
  result.itls_s = std::move(itls_s);
  return result;
}

TEST(LoadGeneratorStats, MetricsCountOnlySuccessfulRequests) {
  RequestResult failed;
  failed.error = "HTTP 500: overloaded";
  failed.prompt_tokens = 30;
  const std::vector<RequestResult> results = {finished(0.1, 0.5, 5, 10, {0.05, 0.1, 0.15, 0.1}),
                                              finished(0.2, 0.2, 1, 20, {}), failed};
  const BenchmarkMetrics metrics = calculate_metrics(results, 2.0);
  EXPECT_EQ(metrics.completed, 2);
  EXPECT_EQ(metrics.failed, 1);
  EXPECT_EQ(metrics.total_input_tokens, 30);  // 10 + 20; the failed request's 30 do not count
  EXPECT_EQ(metrics.total_output_tokens, 6);
  EXPECT_DOUBLE_EQ(metrics.request_throughput, 1.0);       // 2 requests / 2 s
  EXPECT_DOUBLE_EQ(metrics.output_throughput, 3.0);        // 6 tokens / 2 s
  EXPECT_DOUBLE_EQ(metrics.total_token_throughput, 18.0);  // 36 tokens / 2 s
  EXPECT_NEAR(metrics.ttft_ms.mean, 150, 1e-9);
  EXPECT_NEAR(metrics.ttft_ms.median, 150, 1e-9);
  EXPECT_NEAR(metrics.ttft_ms.p99, 100 + 0.99 * 100, 1e-9);
  // TPOT only of the request with more than one token: (500 - 100) ms / 4 tokens after the first.
  EXPECT_NEAR(metrics.tpot_ms.mean, 100, 1e-9);
  EXPECT_NEAR(metrics.tpot_ms.p99, 100, 1e-9);
  // ITLs pooled over requests: 50 100 100 150 ms, p99 rank 2.97.
  EXPECT_NEAR(metrics.itl_ms.mean, 100, 1e-9);
  EXPECT_NEAR(metrics.itl_ms.median, 100, 1e-9);
  EXPECT_NEAR(metrics.itl_ms.p99, 100 + 0.97 * 50, 1e-9);
  EXPECT_NEAR(metrics.e2el_ms.mean, 350, 1e-9);
  EXPECT_NEAR(metrics.e2el_ms.p99, 200 + 0.99 * 300, 1e-9);

  const std::string report = format_report(metrics);
  for (const char* line :
       {"============ Serving Benchmark Result ============", "Successful requests:", "Failed requests:",
        "Benchmark duration (s):", "Total input tokens:", "Total generated tokens:",
        "Request throughput (req/s):", "Output token throughput (tok/s):", "Total Token throughput (tok/s):",
        "Mean TTFT (ms):", "Median TPOT (ms):", "P99 ITL (ms):", "P99 E2EL (ms):"})
    EXPECT_NE(report.find(line), std::string::npos) << line;
  EXPECT_NE(report.find("P99 TTFT (ms):                           199.00"), std::string::npos) << report;

  const nlohmann::json json = metrics_json(metrics, results);
  EXPECT_EQ(json["completed"], 2);
  EXPECT_EQ(json["failed"], 1);
  EXPECT_NEAR(json["p99_itl_ms"].get<double>(), 148.5, 1e-9);
  EXPECT_EQ(json["output_lens"], nlohmann::json({5, 1, 0}));
  EXPECT_EQ(json["itls"][0].size(), 4u);
  EXPECT_EQ(json["errors"], nlohmann::json({"", "", "HTTP 500: overloaded"}));
}

// ---- Server-sent events and one response's timing ----

TEST(LoadGeneratorSse, EventsSurviveEverySplitOfTheStream) {
  const std::string stream =
      "data: {\"a\":1}\n\n"
      ": a comment\r\n"
      "data:{\"b\":2}\r\n\r\n"
      "event: message\nid: 7\ndata: first line\ndata: second line\n\n"
      "data: [DONE]\r\r";
  const std::vector<std::string> expected = {"{\"a\":1}", "{\"b\":2}", "first line\nsecond line", "[DONE]"};
  for (size_t split = 0; split <= stream.size(); ++split) {
    SseParser parser;
    std::vector<std::string> events = parser.feed(std::string_view(stream).substr(0, split));
    for (std::string& event : parser.feed(std::string_view(stream).substr(split))) events.push_back(event);
    EXPECT_EQ(events, expected) << "split at byte " << split;
  }
  SseParser byte_by_byte;
  std::vector<std::string> events;
  for (char c : stream)
    for (std::string& event : byte_by_byte.feed(std::string_view(&c, 1))) events.push_back(event);
  EXPECT_EQ(events, expected);
}

TEST(LoadGeneratorSse, AtTheEndACompleteLineCountsAndACutOneDoesNot) {
  SseParser complete;
  EXPECT_TRUE(complete.feed("data: last\n").empty());
  EXPECT_EQ(complete.finish(), std::vector<std::string>{"last"});
  SseParser cut;
  EXPECT_TRUE(cut.feed("data: {\"choices\":[{\"te").empty());
  EXPECT_TRUE(cut.finish().empty());
}

const std::string kUsageEvent =
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":7,\"total_tokens\":18}}\n\n";

TEST(LoadGeneratorRecorder, TimesTokenChunksAsTheyComplete) {
  StreamRecorder recorder;
  recorder.status(200);
  recorder.receive(token_event("a"), 0.010);
  const std::string second = token_event("b");
  recorder.receive(second.substr(0, 9), 0.015);  // the chunk is not complete yet
  recorder.receive(second.substr(9), 0.022);
  recorder.receive("data: {\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":\"length\"}]}\n\n",
                   0.025);
  recorder.receive(kUsageEvent + "data: [DONE]\n\n", 0.026);
  const RequestResult result = recorder.finish("", 0.030);
  EXPECT_TRUE(result.success) << result.error;
  EXPECT_DOUBLE_EQ(result.ttft_s, 0.010);
  ASSERT_EQ(result.itls_s.size(), 1u);
  EXPECT_NEAR(result.itls_s[0], 0.012, 1e-12);
  EXPECT_DOUBLE_EQ(result.latency_s, 0.030);
  EXPECT_EQ(result.output_tokens, 7);  // the server's usage, not the 2 chunks
  EXPECT_EQ(result.prompt_tokens, 11);
  EXPECT_EQ(result.generated_text, "ab");
}

TEST(LoadGeneratorRecorder, CountsChunksWithoutUsage) {
  StreamRecorder recorder;
  recorder.status(200);
  recorder.receive(token_event("x") + token_event("y") + token_event("z") + "data: [DONE]\n\n", 0.01);
  const RequestResult result = recorder.finish("", 0.02);
  EXPECT_TRUE(result.success);
  EXPECT_EQ(result.output_tokens, 3);
  EXPECT_EQ(result.prompt_tokens, 0);
}

RequestResult recorded(int status, const std::string& body, const std::string& transport_error = "") {
  StreamRecorder recorder;
  recorder.status(status);
  recorder.receive(body, 0.01);
  return recorder.finish(transport_error, 0.02);
}

TEST(LoadGeneratorRecorder, FailuresSayWhy) {
  const std::vector<std::pair<RequestResult, std::string>> cases = {
      {recorded(500, "{\"error\":{\"message\":\"overloaded\"}}"),
       "HTTP 500: {\"error\":{\"message\":\"overloaded\"}}"},
      {recorded(200, token_event("a"), "connection error: the response broke off"),
       "connection error: the response broke off"},
      {recorded(200, token_event("a") + "data: {\"error\":{\"message\":\"out of KV blocks\"}}\n\n"),
       "error event: out of KV blocks"},
      {recorded(200, "data: {not json\n\n"), "malformed stream chunk: {not json"},
      {recorded(200, kUsageEvent + "data: [DONE]\n\n"), "the stream ended without a token"}};
  for (const auto& [result, error] : cases) {
    EXPECT_FALSE(result.success);
    EXPECT_EQ(result.error, error);
    EXPECT_EQ(result.output_tokens, 0);
  }
}

// ---- Arrivals and prompts ----

TEST(LoadGeneratorArrivals, PoissonScheduleIsSeededAndHasTheRequestedRate) {
  EXPECT_EQ(arrival_times(4, std::numeric_limits<double>::infinity(), 1), std::vector<double>(4, 0.0));
  const std::vector<double> times = arrival_times(20001, 50, 7);
  EXPECT_EQ(times, arrival_times(20001, 50, 7));
  EXPECT_NE(times, arrival_times(20001, 50, 8));
  EXPECT_EQ(times[0], 0);
  EXPECT_TRUE(std::is_sorted(times.begin(), times.end()));
  EXPECT_NEAR(times.back() / 20000, 1.0 / 50, 0.03 / 50);  // mean gap 1 / rate (its std error is 0.7%)
  std::vector<double> gaps(times.size());
  std::adjacent_difference(times.begin(), times.end(), gaps.begin());
  const double below_mean =
      std::count_if(gaps.begin() + 1, gaps.end(), [](double gap) { return gap < 1.0 / 50; });
  EXPECT_NEAR(below_mean / 20000, 1 - std::exp(-1.0), 0.02);  // exponential: P(gap < mean) = 1 - 1/e
  expect_error([] { arrival_times(3, 0, 1); }, {"request rate", "positive"});
}

TEST(LoadGeneratorPrompts, RandomTokenIdsWithASharedPrefix) {
  PromptOptions options;
  options.num_prompts = 4;
  options.input_len = 32;
  options.prefix_len = 8;
  options.min_token_id = 10;
  options.max_token_id = 20;
  const std::vector<Prompt> prompts = make_prompts(options);
  ASSERT_EQ(prompts.size(), 4u);
  const auto& first = std::get<std::vector<int32_t>>(prompts[0].content);
  for (const Prompt& prompt : prompts) {
    const auto& ids = std::get<std::vector<int32_t>>(prompt.content);
    ASSERT_EQ(ids.size(), 40u);
    EXPECT_EQ(prompt.num_tokens, 40);
    EXPECT_TRUE(std::all_of(ids.begin(), ids.end(), [](int32_t id) { return id >= 10 && id <= 20; }));
    EXPECT_TRUE(std::equal(ids.begin(), ids.begin() + 8, first.begin()));
  }
  EXPECT_NE(std::get<std::vector<int32_t>>(prompts[1].content), first);
  EXPECT_EQ(std::get<std::vector<int32_t>>(make_prompts(options)[3].content),
            std::get<std::vector<int32_t>>(prompts[3].content));
  options.seed = 1;
  EXPECT_NE(std::get<std::vector<int32_t>>(make_prompts(options)[0].content), first);
}

std::filesystem::path gpt2_dir() { return swiftkv::testing::shared_dir() / "data/tokenizers/gpt2"; }

TEST(LoadGeneratorPrompts, TokenizerTextHasTheExactTokenCount) {
  PromptOptions options;
  options.num_prompts = 3;
  options.input_len = 40;
  options.prefix_len = 16;
  options.tokenizer_dir = gpt2_dir().string();
  const std::vector<Prompt> prompts = make_prompts(options);
  const auto tokenizer = tokenizer::Tokenizer::from_dir(gpt2_dir());
  const auto& first = std::get<std::string>(prompts[0].content);
  for (const Prompt& prompt : prompts) {
    const auto& text = std::get<std::string>(prompt.content);
    EXPECT_EQ(tokenizer.encode(text, false).size(), 56u) << text;
    EXPECT_EQ(prompt.num_tokens, 56);
    // The prefix is the same text in every prompt.
    const size_t common =
        std::mismatch(text.begin(), text.end(), first.begin(), first.end()).first - text.begin();
    EXPECT_GE(tokenizer.encode(first.substr(0, common), false).size(), 15u);
  }
  EXPECT_NE(prompts[1].content, prompts[0].content);
}

TEST(LoadGeneratorPrompts, DatasetParagraphsWholeOrCutToTheInputLength) {
  const auto dir = swiftkv::testing::fresh_temp_dir("load_generator_dataset_" + std::to_string(::getpid()));
  const std::vector<std::string> paragraphs = {"One day a cat sat on a mat and looked at the sky.",
                                               "The dog ran to the park.\nIt was happy.", "Birds sing."};
  std::ofstream(dir / "data.txt") << paragraphs[0] << "\n\n"
                                  << paragraphs[1] << "\n\n\n\n"
                                  << paragraphs[2] << "\n";
  PromptOptions options;
  options.num_prompts = 6;
  options.input_len = 4;
  options.dataset_path = (dir / "data.txt").string();
  std::set<std::string> seen;
  for (const Prompt& prompt : make_prompts(options)) {
    seen.insert(std::get<std::string>(prompt.content));
    EXPECT_EQ(prompt.num_tokens, 0);  // unknown without a tokenizer: the server's usage tells
  }
  EXPECT_EQ(seen, std::set<std::string>({paragraphs[0], paragraphs[1], paragraphs[2] + "\n"}));

  options.tokenizer_dir = gpt2_dir().string();
  for (const Prompt& prompt : make_prompts(options)) {
    const auto& text = std::get<std::string>(prompt.content);
    EXPECT_LE(prompt.num_tokens, 4);
    EXPECT_TRUE(std::any_of(paragraphs.begin(), paragraphs.end(), [&](const std::string& p) {
      return p.starts_with(text);
    })) << text;
  }

  options.tokenizer_dir.clear();
  options.prefix_len = 4;
  expect_error([&] { make_prompts(options); }, {"--prefix-len", "--tokenizer"});
  options.prefix_len = 0;
  options.dataset_path = (dir / "missing.txt").string();
  expect_error([&] { make_prompts(options); }, {"--dataset", "missing.txt"});
  PromptOptions bad_range;
  bad_range.min_token_id = 9;
  bad_range.max_token_id = 3;
  expect_error([&] { make_prompts(bad_range); }, {"[9, 3]"});
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace swiftkv::server
