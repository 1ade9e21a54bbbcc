// `swiftkv serve` under bad input and load: OpenAI-style errors for every bad request (and the
// server keeps serving), API keys, 503 when the queue is full, /health while streams run, a
// client that hangs up cancels its request, SIGTERM ends streams (abort, [DONE]) and exits cleanly.
#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <thread>

#include "server/server_fixture.h"

namespace swiftkv::testing {
namespace {

using Clock = std::chrono::steady_clock;

class ServeRobustly : public StoriesServer {};

struct BadCall {
  std::string path;
  std::string body;
  int status;
  std::string param;  // the field the error names ("" for none)
};

void expect_openai_error(const std::string& body, int status, const std::string& param) {
  Json error;
  ASSERT_NO_THROW(error = Json::parse(body)) << body;
  ASSERT_TRUE(error.contains("error")) << body;
  EXPECT_FALSE(error["error"]["message"].get<std::string>().empty());
  EXPECT_TRUE(error["error"]["type"].is_string());
  EXPECT_EQ(error["error"]["code"], status);
  EXPECT_EQ(error["error"]["param"], param.empty() ? Json(nullptr) : Json(param)) << body;
}

// A long greedy story that does not stop at eos.
std::string long_stream_body(int max_tokens = 400) {
  return server::to_wire({{"prompt", "Once upon a time"},
                          {"max_tokens", max_tokens},
                          {"temperature", 0},
                          {"ignore_eos", true},
                          {"stream", true}});
}

TEST_F(ServeRobustly, BadInputGetsOpenAIErrorsAndTheServerKeepsServing) {
  const std::string too_long = server::to_wire({{"prompt", std::vector<int32_t>(600, 5)}});
  std::vector<BadCall> calls = {
      {"/v1/completions", R"({"prompt": "Hi", "max_tokens": )", 400, ""},
      {"/v1/completions", "", 400, ""},
      {"/v1/completions", std::string(R"({"prompt": "caf)") + "\xE9" + R"("})", 400, ""},
      {"/v1/completions", R"({"prompt": "Hi", "temperature": "hot"})", 400, "temperature"},
      {"/v1/completions", R"({"prompt": 5})", 400, "prompt"},
      {"/v1/completions", R"({"prompt": "Hi", "model": "gpt-4o"})", 400, "model"},
      {"/v1/completions", R"({"prompt": "Hi", "max_tokens": 0})", 400, "max_tokens"},
      {"/v1/completions", too_long, 400, "prompt"},
      {"/v1/completions", R"({"prompt": "Hi", "max_tokens": 600})", 400, "max_tokens"},
      {"/v1/completions", R"({"prompt": [1, 512]})", 400, "prompt"},
      {"/v1/completions", R"({"prompt": [1, -7]})", 400, "prompt"},
      {"/v1/completions", R"({"prompt": "Hi", "n": 3})", 400, "n"},
      {"/v1/completions", R"({"prompt": "Hi", "stream": true, "max_tokens": -1})", 400, "max_tokens"},
      {"/v1/chat/completions", R"({"messages": "Hi"})", 400, "messages"},
      {"/v1/chat/completions", R"({"messages": [{"role": "user", "content": "Hi"}], "top_p": 7})", 400,
       "top_p"},
      {"/tokenize", R"({"prompt": 3})", 400, "prompt"},
      {"/detokenize", R"({"tokens": [1, 100000]})", 400, "tokens"},
      {"/detokenize", R"({"tokens": "abc"})", 400, "tokens"},
      {"/v1/embeddings", R"({"input": "Hi"})", 404, ""},
  };
  // An ignored field nested far too deep: refused while parsing, not a crash in a later copy.
  const std::string deep = R"({"messages": [{"role": "user", "content": "Hi"}], "prompt": "Hi", "x": )" +
                           std::string(500000, '[') + std::string(500000, ']') + "}";
  for (const char* path : {"/v1/completions", "/v1/chat/completions", "/tokenize"})
    calls.push_back({path, deep, 400, ""});
  auto http = client();
  for (const BadCall& call : calls) {
    SCOPED_TRACE(call.path + " " + call.body.substr(0, 200));
    auto result = http->Post(call.path.c_str(), call.body, "application/json");
    ASSERT_TRUE(result) << httplib::to_string(result.error());
    EXPECT_EQ(result->status, call.status);
    expect_openai_error(result->body, call.status, call.param);
  }
  // JSON sent as a form (curl -d) over httplib's form limit: the 413 says so, not "over 64 MiB".
  auto form = http->Post("/v1/completions", std::string(9000, 'x'), "application/x-www-form-urlencoded");
  ASSERT_TRUE(form);
  EXPECT_EQ(form->status, 413);
  expect_openai_error(form->body, 413, "");
  EXPECT_NE(form->body.find("application/json"), std::string::npos) << form->body;
  // Without the key, or with a wrong one: 401 on /v1/*; /health and /metrics stay open.
  for (bool with_key : {false, true}) {
    auto other = client(*server_, false);
    if (with_key) other->set_bearer_token_auth("wrong-key");
    auto refused = other->Post("/v1/completions", R"({"prompt": "Hi"})", "application/json");
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->status, 401);
    expect_openai_error(refused->body, 401, "");
    EXPECT_EQ(other->Get("/v1/models")->status, 401);
    EXPECT_EQ(other->Get("/health")->status, 200);
    EXPECT_EQ(other->Get("/metrics")->status, 200);
  }
  // Still serving.
  EXPECT_EQ(http->Get("/health")->status, 200);
  const Json response = post("/v1/completions", {{"prompt", "Hi"}, {"max_tokens", 3}});
  EXPECT_EQ(response["choices"].size(), 1u);
  // A refused streaming request gets a plain JSON error, not a stream.
  const StreamResult refused =
      post_stream(*server_, "/v1/completions", R"({"prompt": [1, 999], "stream": true})");
  EXPECT_EQ(refused.status, 400);
  expect_openai_error(refused.body, 400, "prompt");
}

TEST_F(ServeRobustly, AClientThatHangsUpMidStreamCancelsItsRequest) {
  const std::string l = "{model_name=\"stories\"";
  const std::string aborted = "swiftkv:request_success_total" + l + ",finished_reason=\"abort\"}";
  const std::string generated = "swiftkv:generation_tokens_total" + l + "}";
  const std::string before = metrics_text(*server_);
  int events = 0;
  constexpr int kMaxTokens = 480;
  const StreamResult stream = post_stream(*server_, "/v1/completions", long_stream_body(kMaxTokens),
                                          [&](const std::string&) { return ++events < 2; });
  EXPECT_EQ(stream.status, 200);
  EXPECT_FALSE(stream.ended());
  // The server notices at its next write and cancels: the engine drops the request well before
  // its 480 tokens.
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  std::string after;
  do {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    after = metrics_text(*server_);
  } while (prometheus_sample(after, "swiftkv:num_requests_running" + l + "}") != 0 &&
           Clock::now() < deadline);
  EXPECT_EQ(prometheus_sample(after, aborted) - prometheus_sample(before, aborted), 1);
  EXPECT_LT(prometheus_sample(after, generated) - prometheus_sample(before, generated), kMaxTokens);
}

// A server of its own: 2 running + 1 waiting requests at most.
TEST_F(ServeRobustly, AFullQueueGets503WhileHealthAnswers) {
  ServeProcess small(serve_args({"--max-num-seqs", "2", "--max-waiting-requests", "1"}));
  constexpr int kClients = 8;
  std::vector<StreamResult> results(kClients);
  std::atomic<int> streaming{0}, streams_done{0}, clients_done{0};
  std::barrier start(kClients + 1);
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i)
    clients.emplace_back([&, i] {
      start.arrive_and_wait();
      bool first = true;
      results[i] = post_stream(small, "/v1/completions", long_stream_body(), [&](const std::string&) {
        if (first) ++streaming;
        first = false;
        return true;
      });
      if (results[i].status == 200) ++streams_done;
      ++clients_done;
    });
  start.arrive_and_wait();
  // Both running streams have started (the third admitted one waits for a slot): /health must
  // answer now, not when a stream ends.
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (streaming < 2 && clients_done < kClients && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  auto health = client(small, false)->Get("/health");
  const int streams_done_at_health = streams_done;
  for (std::thread& thread : clients) thread.join();

  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(streams_done_at_health, 0) << "/health waited for a stream to end";
  int accepted = 0, refused = 0;
  for (const StreamResult& result : results) {
    if (result.status == 200) {
      ++accepted;
      EXPECT_TRUE(result.ended());
    } else {
      ++refused;
      EXPECT_EQ(result.status, 503);
      expect_openai_error(result.body, 503, "");
    }
  }
  EXPECT_GE(accepted, 2);
  EXPECT_GE(refused, 1);
  // More prompts in one request than can ever be in flight: refused outright, not "retry later".
  auto too_many =
      client(small)->Post("/v1/completions", R"({"prompt": ["a", "b", "c", "d"]})", "application/json");
  ASSERT_TRUE(too_many);
  EXPECT_EQ(too_many->status, 400);
  expect_openai_error(too_many->body, 400, "prompt");
  EXPECT_EQ(small.stop(SIGTERM), 0);
}

TEST_F(ServeRobustly, SigtermEndsRunningStreamsWithAbortAndDoneAndExitsCleanly) {
  ServeProcess own(serve_args({}));
  constexpr int kStreams = 3;
  std::vector<StreamResult> results(kStreams);
  std::atomic<int> streaming{0};
  std::vector<std::thread> readers;
  for (int i = 0; i < kStreams; ++i)
    readers.emplace_back([&, i] {
      bool first = true;
      results[i] = post_stream(own, "/v1/completions", long_stream_body(480), [&](const std::string&) {
        if (first) ++streaming;
        first = false;
        return true;
      });
    });
  while (streaming < kStreams) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(own.stop(SIGTERM), 0);
  for (std::thread& reader : readers) reader.join();
  // Every stream was generating when the signal came: each ends properly, not cut off.
  for (const StreamResult& result : results) {
    EXPECT_EQ(result.status, 200);
    ASSERT_TRUE(result.ended()) << "a stream was cut off without [DONE]";
    const std::vector<Json> chunks = result.chunks();
    ASSERT_FALSE(chunks.empty());
    EXPECT_EQ(chunks.back()["choices"][0]["finish_reason"], "abort");
  }
}

}  // namespace
}  // namespace swiftkv::testing
