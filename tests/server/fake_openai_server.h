#pragma once
// An in-process fake OpenAI-compatible server for the `bench serve` load generator's tests: it streams a
// known number of completion chunks with known delays, splits every `data:` line across two writes, and
// fails on schedule (HTTP 500, or a stream cut off mid-way), counting the requests it has in flight.
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace swiftkv::testing {

// One server-sent event of a streamed completion carrying `text`.
inline std::string token_event(const std::string& text) {
  return "data: " + nlohmann::json{{"choices", {{{"index", 0}, {"text", text}}}}}.dump() + "\n\n";
}

struct FakeServerOptions {
  std::chrono::milliseconds first_token_delay{20};
  std::chrono::milliseconds token_delay{2};
  int tokens_per_chunk = 1;
  bool report_usage = true;
  int fail_every = 0;   // every n-th request (in arrival order) answers HTTP 500
  int break_every = 0;  // every n-th request's stream is cut off half-way
};

// Streams max_tokens tokens ("t0", "t1", ...) per completion request, each `data:` line in two writes.
class FakeOpenAiServer {
 public:
  explicit FakeOpenAiServer(FakeServerOptions options) : options_(options) {
    server_.Get("/v1/models", [](const httplib::Request&, httplib::Response& response) {
      response.set_content(R"({"object":"list","data":[{"id":"fake-model","object":"model"}]})",
                           "application/json");
    });
    server_.Post("/v1/completions", [this](const httplib::Request& request, httplib::Response& response) {
      complete(request, response);
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~FakeOpenAiServer() {
    server_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int max_in_flight() const { return max_in_flight_; }
  std::vector<nlohmann::json> bodies() const {
    std::lock_guard lock(mutex_);
    return bodies_;
  }
  std::vector<std::string> authorizations() const {
    std::lock_guard lock(mutex_);
    return authorizations_;
  }

 private:
  void complete(const httplib::Request& request, httplib::Response& response) {
    const int number = ++requests_;
    const int in_flight = ++in_flight_;
    for (int seen = max_in_flight_;
         in_flight > seen && !max_in_flight_.compare_exchange_weak(seen, in_flight);) {
    }
    const nlohmann::json body = nlohmann::json::parse(request.body);
    {
      std::lock_guard lock(mutex_);
      bodies_.push_back(body);
      authorizations_.push_back(request.get_header_value("Authorization"));
    }
    if (options_.fail_every > 0 && number % options_.fail_every == 0) {
      --in_flight_;
      response.status = 500;
      response.set_content(R"({"error":{"message":"fake overload"}})", "application/json");
      return;
    }
    const int tokens = body["max_tokens"].get<int>();
    const bool cut_off = options_.break_every > 0 && number % options_.break_every == 0;
    const size_t prompt_tokens = body["prompt"].is_array() ? body["prompt"].size() : 0;
    response.set_chunked_content_provider("text/event-stream", [=, this](size_t, httplib::DataSink& sink) {
      std::this_thread::sleep_for(options_.first_token_delay);
      for (int token = 0; token < tokens; token += options_.tokens_per_chunk) {
        if (cut_off && token >= tokens / 2) {
          --in_flight_;
          return false;  // httplib drops the connection without the chunked encoding's end
        }
        std::string text;
        for (int i = token; i < std::min(tokens, token + options_.tokens_per_chunk); ++i)
          text += "t" + std::to_string(i);
        write_in_two_parts(sink, token_event(text));
        std::this_thread::sleep_for(options_.token_delay);
      }
      if (options_.report_usage)  // a BOS on top of the prompt, as servers that add one count it
        write_in_two_parts(
            sink, "data: " +
                      nlohmann::json{
                          {"choices", nlohmann::json::array()},
                          {"usage", {{"prompt_tokens", prompt_tokens + 1}, {"completion_tokens", tokens}}}}
                          .dump() +
                      "\n\n");
      write_in_two_parts(sink, "data: [DONE]\n\n");
      --in_flight_;
      sink.done();
      return true;
    });
  }
  static void write_in_two_parts(httplib::DataSink& sink, const std::string& event) {
    const size_t half = event.size() / 2;
    sink.write(event.data(), half);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    sink.write(event.data() + half, event.size() - half);
  }

  FakeServerOptions options_;
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<int> requests_{0}, in_flight_{0}, max_in_flight_{0};
  mutable std::mutex mutex_;
  std::vector<nlohmann::json> bodies_;
  std::vector<std::string> authorizations_;
};

}  // namespace swiftkv::testing
