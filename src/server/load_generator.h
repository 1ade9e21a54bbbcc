#pragma once
// `swiftkv bench serve`: a load generator for any OpenAI-compatible server (swiftkv serve, llama.cpp's
// llama-server, vLLM), measured the way vLLM's benchmarks/benchmark_serving.py measures: every request
// streams POST /v1/completions, and the client times the first token (TTFT), the gaps between token
// chunks (ITL), the time per output token after the first (TPOT) and the whole request (E2E latency).
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace swiftkv::server {

// ---- Prompts (load_generator_prompts.cpp) ----

struct PromptOptions {
  int64_t num_prompts = 100;
  // Tokens of each prompt after the shared prefix (the whole prompt is prefix_len + input_len tokens, as
  // vLLM's random dataset); with a dataset, the length paragraphs are cut to (needs a tokenizer).
  int64_t input_len = 1024;
  int64_t prefix_len = 0;  // tokens every prompt starts with (the same ones): exercises prefix caching
  // Without a tokenizer, prompts are lists of token ids drawn uniformly from [min_token_id, max_token_id]:
  // the default range is valid for any vocabulary of 256+ tokens (stories260K has 512) and skips ids 0-2
  // (<unk>, <s>, </s> in Llama-2 style vocabularies).
  int32_t min_token_id = 3;
  int32_t max_token_id = 255;
  std::string tokenizer_dir;  // a model directory: prompts are text of exactly the requested token count
  std::string
      dataset_path;  // plain text: its paragraphs ("\n\n"-separated), shuffled by the seed, are the prompts
  uint64_t seed = 0;
};

struct Prompt {
  std::variant<std::string, std::vector<int32_t>> content;  // text, or token ids
  int64_t num_tokens = 0;  // 0 when unknown (dataset text without a tokenizer)
};

// Throws swiftkv::Error on inconsistent options or an unreadable dataset / tokenizer.
std::vector<Prompt> make_prompts(const PromptOptions& options);

// ---- Requests and their timing (load_generator.cpp) ----

// A server-sent event stream (text/event-stream) as it arrives: bytes in, the data of each complete event
// out. Bytes may be split anywhere, even inside a line or between "\r" and "\n".
class SseParser {
 public:
  std::vector<std::string> feed(std::string_view bytes);
  // End of the stream: an event whose last line is complete but which lacks the blank line that ends it
  // is still delivered; a line cut off mid-way (a truncated stream) is dropped.
  std::vector<std::string> finish();

 private:
  void end_line(std::vector<std::string>& events);
  std::string line_, data_;
  bool has_data_ = false, after_cr_ = false;
};

// One request as the client saw it. Times are seconds.
struct RequestResult {
  bool success = false;
  std::string error;           // why it failed (HTTP status and body, connection error, error event)
  double start_s = 0;          // when it was sent, after the benchmark's start
  double ttft_s = 0;           // until the first chunk with text
  double latency_s = 0;        // until the response ended
  std::vector<double> itls_s;  // gaps between consecutive chunks with text
  int64_t output_tokens = 0;   // usage.completion_tokens when the server reports it, else chunks with text
  int64_t prompt_tokens = 0;   // usage.prompt_tokens when reported, else the prompt's own count
  std::string generated_text;
};

// Turns one streamed completion response into a RequestResult, fed as the response arrives.
// `now_s` is the time since the request was sent.
class StreamRecorder {
 public:
  void status(int http_status);
  void receive(std::string_view bytes, double now_s);
  // transport_error: empty when the response arrived whole, else why the connection failed.
  RequestResult finish(const std::string& transport_error, double now_s);

 private:
  void event(const std::string& data, double now_s);
  SseParser parser_;
  RequestResult result_;
  int status_ = 0;
  std::string error_body_, stream_error_;
  double last_token_s_ = 0;
  int64_t token_chunks_ = 0;
  std::optional<int64_t> usage_completion_tokens_;
};

struct LoadOptions {
  std::string url =
      "http://127.0.0.1:8000";  // scheme://host:port, optionally a path prefix (a trailing /v1 is dropped)
  std::string endpoint = "/v1/completions";
  std::string model;  // empty: the first id GET /v1/models lists
  std::string api_key;
  int64_t output_len = 128;
  double request_rate =
      std::numeric_limits<double>::infinity();  // requests/s, Poisson arrivals; inf: all at once
  int64_t max_concurrency = 0;                  // 0: no limit
  uint64_t seed = 0;                            // of the arrival times
  double timeout_s = 3600;                      // longest wait for any byte of a response
};

// The JSON body of one streamed completion request.
std::string completion_request_body(const std::string& model, const Prompt& prompt, int64_t max_tokens);

// Sends one request and streams its response (httplib::Client, one connection).
RequestResult send_completion(const LoadOptions& options, const std::string& body);

// The first model id of GET /v1/models; throws swiftkv::Error when the server cannot be reached or lists
// none.
std::string first_served_model(const LoadOptions& options);

// Send times (seconds after the start) of `count` requests: all 0 for an infinite rate, otherwise a Poisson
// process (exponential gaps of mean 1 / rate) drawn from `seed`, with the first request at 0.
std::vector<double> arrival_times(int64_t count, double request_rate, uint64_t seed);

struct BenchmarkRun {
  std::vector<RequestResult> results;  // in prompt order
  double duration_s = 0;
};

// Sends every prompt at its arrival time (at most max_concurrency in flight), each on its own thread and
// connection, and waits for all. options.model must be set (see first_served_model).
BenchmarkRun run_benchmark(const LoadOptions& options, const std::vector<Prompt>& prompts);

// ---- Metrics (load_generator_metrics.cpp) ----

struct Summary {
  double mean = 0, median = 0, p99 = 0;
};
// The p-th percentile (0..100) with linear interpolation between closest ranks (numpy's default).
double percentile(std::vector<double> values, double p);
Summary summarize(const std::vector<double>& values);  // zeros when empty

struct BenchmarkMetrics {
  int64_t completed = 0, failed = 0;
  int64_t total_input_tokens = 0, total_output_tokens = 0;  // of the successful requests
  double duration_s = 0;
  double request_throughput = 0, output_throughput = 0, total_token_throughput = 0;  // per second
  // In milliseconds. TPOT = (latency - TTFT) / (output tokens - 1), over requests with 2+ output tokens.
  Summary ttft_ms, tpot_ms, itl_ms, e2el_ms;
};
BenchmarkMetrics calculate_metrics(const std::vector<RequestResult>& results, double duration_s);

// The table vLLM prints ("============ Serving Benchmark Result ============" ...).
std::string format_report(const BenchmarkMetrics& metrics);
// The same numbers under vLLM's --save-result keys, plus per-request arrays (seconds, prompt order):
// input_lens, output_lens, ttfts, itls, start_times, errors ("" for successes).
nlohmann::json metrics_json(const BenchmarkMetrics& metrics, const std::vector<RequestResult>& results);

}  // namespace swiftkv::server
