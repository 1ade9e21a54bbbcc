// The request side of `swiftkv bench serve`: SSE parsing, per-request timing, the request loop.
#include "server/load_generator.h"

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <semaphore>
#include <system_error>
#include <thread>

#include "common/error.h"
#include "tokenizer/tokenizer.h"

namespace swiftkv::server {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Error bodies and malformed chunks are quoted in messages only up to this many bytes.
constexpr size_t kQuotedBytes = 300;

std::string excerpt(std::string_view text) {
  std::string shown = tokenizer::sanitize_utf8(text.substr(0, kQuotedBytes));
  if (text.size() > kQuotedBytes) shown += "...";
  return shown;
}

// The text of a completion chunk (choices[0].text), or of a chat chunk (choices[0].delta.content).
std::string chunk_text(const nlohmann::json& choice) {
  if (auto text = choice.find("text"); text != choice.end() && text->is_string())
    return text->get<std::string>();
  if (auto delta = choice.find("delta"); delta != choice.end() && delta->is_object())
    if (auto content = delta->find("content"); content != delta->end() && content->is_string())
      return content->get<std::string>();
  return {};
}

std::optional<int64_t> usage_count(const nlohmann::json& usage, const char* key) {
  auto value = usage.find(key);
  if (value == usage.end() || !value->is_number_integer()) return std::nullopt;
  return value->get<int64_t>();
}

// scheme://host[:port] and a path prefix without a trailing "/" or "/v1" (so OpenAI-style base URLs
// such as http://host:8000/v1 work too).
std::pair<std::string, std::string> split_url(const std::string& url) {
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos ||
      (url.compare(0, scheme_end, "http") != 0 && url.compare(0, scheme_end, "https") != 0))
    throw Error("--url " + url + " must start with http:// or https://");
  const size_t path_start = url.find('/', scheme_end + 3);
  if (path_start == scheme_end + 3) throw Error("--url " + url + " has no host");
  std::string origin = url.substr(0, path_start);
  std::string prefix = path_start == std::string::npos ? "" : url.substr(path_start);
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  if (prefix.ends_with("/v1")) prefix.resize(prefix.size() - 3);
  return {origin, prefix};
}

// httplib's own names ("Connection", "Read") say little to someone reading a benchmark's failures.
std::string describe(httplib::Error error) {
  switch (error) {
    case httplib::Error::Connection:
      return "could not connect (is the server running at --url?)";
    case httplib::Error::ConnectionTimeout:
      return "timed out connecting";
    case httplib::Error::Read:
      return "the response broke off, or stalled longer than --timeout";
    case httplib::Error::Write:
      return "the connection broke while sending the request";
    case httplib::Error::SSLConnection:
    case httplib::Error::SSLServerVerification:
      return "the TLS handshake or the certificate check failed";
    default:
      return "httplib error " + httplib::to_string(error);
  }
}

std::unique_ptr<httplib::Client> make_client(const LoadOptions& options, const std::string& origin) {
  auto client = std::make_unique<httplib::Client>(origin);
  const auto timeout = std::chrono::duration<double>(options.timeout_s);
  client->set_connection_timeout(std::chrono::duration_cast<std::chrono::microseconds>(timeout));
  client->set_read_timeout(std::chrono::duration_cast<std::chrono::microseconds>(timeout));
  client->set_write_timeout(std::chrono::duration_cast<std::chrono::microseconds>(timeout));
  client->set_keep_alive(false);
  if (!options.api_key.empty()) client->set_bearer_token_auth(options.api_key);
  return client;
}

}  // namespace

// ---- SseParser ----

std::vector<std::string> SseParser::feed(std::string_view bytes) {
  std::vector<std::string> events;
  for (char c : bytes) {
    if (after_cr_ && c == '\n') {  // the "\n" of a "\r\n" that arrived split
      after_cr_ = false;
      continue;
    }
    after_cr_ = c == '\r';
    if (c == '\r' || c == '\n')
      end_line(events);
    else
      line_ += c;
  }
  return events;
}

std::vector<std::string> SseParser::finish() {
  std::vector<std::string> events;
  line_.clear();  // an unterminated last line is dropped; the stream's end ends the event
  end_line(events);
  return events;
}

void SseParser::end_line(std::vector<std::string>& events) {
  if (line_.empty()) {  // a blank line ends the event
    if (has_data_) events.push_back(std::move(data_));
    data_.clear();
    has_data_ = false;
    return;
  }
  // Only "data:" carries a completion; "event:", "id:", "retry:" and ": comments" are skipped.
  if (line_.starts_with("data:")) {
    std::string_view value = std::string_view(line_).substr(5);
    if (value.starts_with(' ')) value.remove_prefix(1);
    if (has_data_) data_ += '\n';
    data_ += value;
    has_data_ = true;
  }
  line_.clear();
}

// ---- StreamRecorder ----

void StreamRecorder::status(int http_status) { status_ = http_status; }

void StreamRecorder::receive(std::string_view bytes, double now_s) {
  if (status_ != 200) {
    if (error_body_.size() < kQuotedBytes) error_body_.append(bytes.substr(0, kQuotedBytes));
    return;
  }
  for (const std::string& data : parser_.feed(bytes)) event(data, now_s);
}

void StreamRecorder::event(const std::string& data, double now_s) {
  if (data == "[DONE]" || !stream_error_.empty()) return;
  nlohmann::json chunk = nlohmann::json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (chunk.is_discarded() || !chunk.is_object()) {
    stream_error_ = "malformed stream chunk: " + excerpt(data);
    return;
  }
  if (auto error = chunk.find("error"); error != chunk.end()) {  // vLLM reports errors mid-stream this way
    const bool has_message =
        error->is_object() && error->contains("message") && (*error)["message"].is_string();
    stream_error_ =
        "error event: " + (has_message ? (*error)["message"].get<std::string>() : excerpt(error->dump()));
    return;
  }
  if (auto choices = chunk.find("choices");
      choices != chunk.end() && choices->is_array() && !choices->empty()) {
    const std::string text = chunk_text(choices->front());
    if (!text.empty()) {  // chunks without text (e.g. only a finish_reason) are not tokens
      if (token_chunks_ == 0)
        result_.ttft_s = now_s;
      else
        result_.itls_s.push_back(now_s - last_token_s_);
      last_token_s_ = now_s;
      ++token_chunks_;
      result_.generated_text += text;
    }
  }
  if (auto usage = chunk.find("usage"); usage != chunk.end() && usage->is_object()) {
    if (auto tokens = usage_count(*usage, "completion_tokens")) usage_completion_tokens_ = tokens;
    if (auto tokens = usage_count(*usage, "prompt_tokens")) result_.prompt_tokens = *tokens;
  }
}

RequestResult StreamRecorder::finish(const std::string& transport_error, double now_s) {
  if (status_ == 200)
    for (const std::string& data : parser_.finish()) event(data, now_s);
  RequestResult result = std::move(result_);
  result.latency_s = now_s;
  if (!transport_error.empty())
    result.error = transport_error;
  else if (status_ != 200)
    result.error = "HTTP " + std::to_string(status_) + ": " + excerpt(error_body_);
  else if (!stream_error_.empty())
    result.error = stream_error_;
  else if (token_chunks_ == 0)
    result.error = "the stream ended without a token";
  result.success = result.error.empty();
  result.output_tokens = result.success ? usage_completion_tokens_.value_or(token_chunks_) : 0;
  return result;
}

// ---- Requests ----

std::string completion_request_body(const std::string& model, const Prompt& prompt, int64_t max_tokens) {
  nlohmann::json body = {{"model", model},     {"max_tokens", max_tokens},
                         {"stream", true},     {"stream_options", {{"include_usage", true}}},
                         {"ignore_eos", true}, {"temperature", 0}};
  std::visit([&](const auto& content) { body["prompt"] = content; }, prompt.content);
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

RequestResult send_completion(const LoadOptions& options, const std::string& body) {
  const auto start = Clock::now();
  StreamRecorder recorder;
  std::string transport_error;
  try {
    const auto [origin, prefix] = split_url(options.url);
    auto client = make_client(options, origin);
    httplib::Request request;
    request.method = "POST";
    request.path = prefix + options.endpoint;
    request.body = body;
    request.set_header("Content-Type", "application/json");
    request.set_header("Accept", "text/event-stream");
    request.set_header("Accept-Encoding", "identity");  // compressed streams arrive in bursts
    request.response_handler = [&](const httplib::Response& response) {
      recorder.status(response.status);
      return true;
    };
    request.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
      recorder.receive(std::string_view(data, size), seconds_since(start));
      return true;
    };
    httplib::Result result = client->send(request);
    if (!result) transport_error = "connection error: " + describe(result.error());
  } catch (const std::exception& error) {
    transport_error = error.what();
  }
  return recorder.finish(transport_error, seconds_since(start));
}

std::string first_served_model(const LoadOptions& options) {
  const auto [origin, prefix] = split_url(options.url);
  auto client = make_client(options, origin);
  const std::string url = origin + prefix + "/v1/models";
  httplib::Result result = client->Get(prefix + "/v1/models");
  if (!result) throw Error("cannot reach " + url + ": " + describe(result.error()));
  if (result->status != 200)
    throw Error("GET " + url + " answered HTTP " + std::to_string(result->status) + ": " +
                excerpt(result->body));
  nlohmann::json models = nlohmann::json::parse(result->body, nullptr, false);
  if (models.is_discarded() || !models.contains("data") || !models["data"].is_array() ||
      models["data"].empty() || !models["data"][0].contains("id") || !models["data"][0]["id"].is_string())
    throw Error("GET " + url + " lists no model id (" + excerpt(result->body) + "); name one with --model");
  return models["data"][0]["id"].get<std::string>();
}

// ---- The request loop ----

std::vector<double> arrival_times(int64_t count, double request_rate, uint64_t seed) {
  if (!(request_rate > 0))
    throw Error("the request rate must be positive (or inf), got " + std::to_string(request_rate));
  std::vector<double> times(static_cast<size_t>(std::max<int64_t>(count, 0)), 0.0);
  if (std::isinf(request_rate)) return times;
  // Inverse-CDF exponential draws from 53 random bits: the same schedule on every standard library.
  std::mt19937_64 rng(seed);
  for (size_t i = 1; i < times.size(); ++i) {
    const double uniform = static_cast<double>(rng() >> 11) * 0x1.0p-53;  // [0, 1)
    times[i] = times[i - 1] - std::log1p(-uniform) / request_rate;
  }
  return times;
}

BenchmarkRun run_benchmark(const LoadOptions& options, const std::vector<Prompt>& prompts) {
  if (options.model.empty()) throw Error("run_benchmark needs a model name");
  if (options.max_concurrency < 0) throw Error("--max-concurrency must be positive (0: no limit)");
  const std::vector<double> arrivals =
      arrival_times(static_cast<int64_t>(prompts.size()), options.request_rate, options.seed);
  std::vector<std::string> bodies;
  for (const Prompt& prompt : prompts)
    bodies.push_back(completion_request_body(options.model, prompt, options.output_len));

  BenchmarkRun run;
  run.results.resize(prompts.size());
  const bool limited = options.max_concurrency > 0;
  std::counting_semaphore<> free_slots(limited ? options.max_concurrency : 0);
  std::vector<std::thread> threads;
  threads.reserve(prompts.size());
  const auto start = Clock::now();
  for (size_t i = 0; i < prompts.size(); ++i) {
    std::this_thread::sleep_until(
        start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(arrivals[i])));
    if (limited) free_slots.acquire();
    try {
      threads.emplace_back([&, i] {
        const double sent_s = seconds_since(start);
        RequestResult& result = run.results[i] = send_completion(options, bodies[i]);
        result.start_s = sent_s;
        if (result.prompt_tokens == 0) result.prompt_tokens = prompts[i].num_tokens;
        if (limited) free_slots.release();
      });
    } catch (const std::system_error& error) {
      for (std::thread& thread : threads) thread.join();
      throw Error("cannot start a thread for request " + std::to_string(i + 1) + " (" + error.what() +
                  "); limit the requests in flight with --max-concurrency");
    }
  }
  for (std::thread& thread : threads) thread.join();
  run.duration_s = seconds_since(start);
  return run;
}

}  // namespace swiftkv::server
