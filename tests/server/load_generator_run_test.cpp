// Whole `bench serve` runs against the in-process fake OpenAI server: token counts, timing bounds, failure
// counting, the concurrency limit and the Poisson send schedule.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <numeric>
#include <set>

#include "common/files.h"
#include "expect_error.h"
#include "server/fake_openai_server.h"
#include "server/load_generator.h"
#include "swiftkv_command.h"
#include "test_paths.h"

namespace swiftkv::server {
namespace {

using namespace std::chrono_literals;
using swiftkv::testing::expect_error;
using swiftkv::testing::FakeOpenAiServer;
using swiftkv::testing::FakeServerOptions;
using swiftkv::testing::run_swiftkv_command;

std::vector<Prompt> token_prompts(int64_t count, int64_t length) {
  PromptOptions options;
  options.num_prompts = count;
  options.input_len = length;
  return make_prompts(options);
}

LoadOptions load_options(const FakeOpenAiServer& server, int64_t output_len) {
  LoadOptions options;
  options.url = server.url();
  options.model = "fake-model";
  options.output_len = output_len;
  options.timeout_s = 10;
  return options;
}

TEST(LoadGeneratorRun, StreamsEveryRequestAndTimesIt) {
  FakeServerOptions fake;
  FakeOpenAiServer server(fake);
  LoadOptions options = load_options(server, 8);
  options.url = server.url() + "/v1/";  // OpenAI-style base URLs work too
  options.api_key = "secret";
  options.model = first_served_model(options);
  EXPECT_EQ(options.model, "fake-model");
  const std::vector<Prompt> prompts = token_prompts(6, 5);
  const BenchmarkRun run = run_benchmark(options, prompts);

  ASSERT_EQ(run.results.size(), 6u);
  const double min_latency = 0.020 + 8 * 0.003;  // first-token delay, then 8 x (1 ms split + 2 ms)
  for (const RequestResult& result : run.results) {
    EXPECT_TRUE(result.success) << result.error;
    EXPECT_EQ(result.output_tokens, 8);
    EXPECT_EQ(result.prompt_tokens, 6);  // the server's usage (prompt + BOS), not the local 5
    EXPECT_EQ(result.generated_text, "t0t1t2t3t4t5t6t7");
    EXPECT_GE(result.ttft_s, 0.020);
    EXPECT_LE(result.ttft_s, result.latency_s);
    EXPECT_GE(result.latency_s, min_latency);
    ASSERT_EQ(result.itls_s.size(), 7u);
    const double itl_sum = std::accumulate(result.itls_s.begin(), result.itls_s.end(), 0.0);
    EXPECT_TRUE(std::all_of(result.itls_s.begin(), result.itls_s.end(), [](double itl) { return itl >= 0; }));
    EXPECT_LE(result.ttft_s + itl_sum, result.latency_s + 1e-9);
    EXPECT_LE(result.start_s + result.latency_s, run.duration_s);
  }
  EXPECT_GT(server.max_in_flight(), 1);  // an infinite rate sends them together

  const std::vector<nlohmann::json> bodies = server.bodies();
  ASSERT_EQ(bodies.size(), 6u);
  std::set<nlohmann::json> sent_prompts;
  for (const nlohmann::json& body : bodies) {
    EXPECT_EQ(body["model"], "fake-model");
    EXPECT_EQ(body["max_tokens"], 8);
    EXPECT_EQ(body["stream"], true);
    EXPECT_EQ(body["stream_options"]["include_usage"], true);
    EXPECT_EQ(body["ignore_eos"], true);
    EXPECT_EQ(body["temperature"], 0);
    sent_prompts.insert(body["prompt"]);
  }
  for (const Prompt& prompt : prompts)
    EXPECT_EQ(sent_prompts.count(nlohmann::json(std::get<std::vector<int32_t>>(prompt.content))), 1u);
  for (const std::string& authorization : server.authorizations()) EXPECT_EQ(authorization, "Bearer secret");

  const BenchmarkMetrics metrics = calculate_metrics(run.results, run.duration_s);
  EXPECT_EQ(metrics.completed, 6);
  EXPECT_EQ(metrics.total_output_tokens, 48);
  EXPECT_EQ(metrics.total_input_tokens, 36);
  EXPECT_LE(metrics.ttft_ms.median, metrics.e2el_ms.median);
}

TEST(LoadGeneratorRun, OutputTokensFromUsageOrElseFromChunks) {
  FakeServerOptions fake;
  fake.tokens_per_chunk = 2;
  fake.first_token_delay = 1ms;
  FakeOpenAiServer with_usage(fake);
  fake.report_usage = false;
  FakeOpenAiServer without_usage(fake);
  const std::vector<Prompt> prompts = token_prompts(2, 3);
  for (const RequestResult& result : run_benchmark(load_options(with_usage, 8), prompts).results) {
    EXPECT_EQ(result.output_tokens, 8);
    EXPECT_EQ(result.itls_s.size(), 3u);  // 4 chunks of 2 tokens
  }
  for (const RequestResult& result : run_benchmark(load_options(without_usage, 8), prompts).results) {
    EXPECT_EQ(result.output_tokens, 4);
    EXPECT_EQ(result.prompt_tokens, 3);  // the prompt's own count when the server reports none
  }
}

TEST(LoadGeneratorRun, CountsHttpErrorsAndBrokenStreamsAsFailures) {
  FakeServerOptions fake;
  fake.first_token_delay = 1ms;
  fake.fail_every = 4;   // requests 4, 8, 12
  fake.break_every = 5;  // requests 5, 10
  FakeOpenAiServer server(fake);
  LoadOptions options = load_options(server, 6);
  options.max_concurrency =
      4;  // httplib's listen backlog is 5: more connections at once can wait 1 s for a SYN retry
  const BenchmarkRun run = run_benchmark(options, token_prompts(12, 4));
  const BenchmarkMetrics metrics = calculate_metrics(run.results, run.duration_s);
  EXPECT_EQ(metrics.completed, 7);
  EXPECT_EQ(metrics.failed, 5);
  EXPECT_EQ(metrics.total_output_tokens, 7 * 6);
  int http_errors = 0, broken = 0;
  for (const RequestResult& result : run.results) {
    if (result.success) continue;
    http_errors += result.error == "HTTP 500: {\"error\":{\"message\":\"fake overload\"}}";
    broken += result.error == "connection error: the response broke off, or stalled longer than --timeout";
  }
  EXPECT_EQ(http_errors, 3);
  EXPECT_EQ(broken, 2);
}

TEST(LoadGeneratorRun, RespectsMaxConcurrency) {
  FakeServerOptions fake;
  fake.first_token_delay = 40ms;
  FakeOpenAiServer server(fake);
  LoadOptions options = load_options(server, 4);
  options.max_concurrency = 3;
  const BenchmarkRun run = run_benchmark(options, token_prompts(12, 4));
  EXPECT_EQ(calculate_metrics(run.results, run.duration_s).completed, 12);
  EXPECT_EQ(server.max_in_flight(), 3);
}

TEST(LoadGeneratorRun, SendsOnThePoissonSchedule) {
  FakeServerOptions fake;
  fake.first_token_delay = 1ms;
  FakeOpenAiServer server(fake);
  LoadOptions options = load_options(server, 2);
  options.request_rate = 40;
  options.seed = 3;
  const BenchmarkRun run = run_benchmark(options, token_prompts(6, 4));
  const std::vector<double> schedule = arrival_times(6, 40, 3);
  ASSERT_GT(schedule.back(), 0.05);  // spread out enough that sending all at once would show
  for (size_t i = 0; i < schedule.size(); ++i) {
    EXPECT_GE(run.results[i].start_s, schedule[i]);
    EXPECT_LT(run.results[i].start_s, schedule[i] + 0.5);
  }
  EXPECT_GE(run.duration_s, schedule.back());
}

// A loopback port that was free a moment ago and that nothing listens on.
int closed_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof address;
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), size), 0);
  EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size), 0);
  close(fd);
  return ntohs(address.sin_port);
}

TEST(LoadGeneratorRun, UnreachableServersAreReported) {
  LoadOptions options;
  options.url = "http://127.0.0.1:" + std::to_string(closed_port());
  options.timeout_s = 5;
  expect_error([&] { first_served_model(options); }, {"cannot reach", "/v1/models"});
  options.model = "m";
  const RequestResult result =
      send_completion(options, completion_request_body("m", token_prompts(1, 2)[0], 4));
  EXPECT_FALSE(result.success);
  EXPECT_EQ(result.error, "connection error: could not connect (is the server running at --url?)");
  options.url = "ftp://127.0.0.1";
  expect_error([&] { first_served_model(options); }, {"--url", "http://"});
}

// ---- The command line ----

TEST(BenchServeCommand, PrintsTheReportAndWritesJson) {
  FakeServerOptions fake;
  fake.first_token_delay = 1ms;
  FakeOpenAiServer server(fake);
  const auto dir = swiftkv::testing::fresh_temp_dir("bench_serve_" + std::to_string(::getpid()));
  const std::string json_path = (dir / "result.json").string();
  const auto run = run_swiftkv_command("bench serve --url " + server.url() +
                                       " --num-prompts 4 --input-len 6 --output-len 5 --max-concurrency 2"
                                       " --request-rate 100 --seed 1 --json " +
                                       json_path);
  ASSERT_EQ(run.status, 0) << run.output;
  for (const char* line :
       {"============ Serving Benchmark Result ============", "Successful requests:                     4 ",
        "Failed requests:                         0 ", "Total generated tokens:                  20 ",
        "Mean TTFT (ms):", "P99 E2EL (ms):"})
    EXPECT_NE(run.output.find(line), std::string::npos) << line << "\n" << run.output;

  const nlohmann::json json = read_json_file(json_path);
  EXPECT_EQ(json["model_id"], "fake-model");  // the first of GET /v1/models
  EXPECT_EQ(json["completed"], 4);
  EXPECT_EQ(json["output_lens"], nlohmann::json({5, 5, 5, 5}));
  EXPECT_EQ(json["input_lens"], nlohmann::json({7, 7, 7, 7}));  // the server's usage: 6 + BOS
  EXPECT_EQ(json["request_rate"], 100.0);
  EXPECT_EQ(json["max_concurrency"], 2);
  EXPECT_EQ(json["ttfts"].size(), 4u);
  EXPECT_EQ(server.bodies().size(), 5u);  // a test request first, then the 4 measured
  EXPECT_LE(server.max_in_flight(), 2);
  std::filesystem::remove_all(dir);
}

TEST(BenchServeCommand, StopsWhenTheTestRequestFailsOrAnOptionIsWrong) {
  FakeServerOptions fake;
  fake.fail_every = 1;
  FakeOpenAiServer server(fake);
  const auto failing =
      run_swiftkv_command("bench serve --url " + server.url() + " --num-prompts 3 --input-len 4");
  EXPECT_EQ(failing.status, 1);
  EXPECT_NE(failing.output.find("test request failed"), std::string::npos) << failing.output;
  EXPECT_NE(failing.output.find("HTTP 500"), std::string::npos) << failing.output;
  EXPECT_EQ(server.bodies().size(), 1u);

  const auto bad_rate = run_swiftkv_command("bench serve --url " + server.url() + " --request-rate fast");
  EXPECT_EQ(bad_rate.status, 1);
  EXPECT_NE(bad_rate.output.find("--request-rate fast"), std::string::npos) << bad_rate.output;
}

}  // namespace
}  // namespace swiftkv::server
