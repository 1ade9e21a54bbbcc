#pragma once
// End-to-end server tests: `swiftkv serve` on stories260K (imported from ../shared) as a child
// process on a free loopback port, and HTTP clients for plain and streamed (SSE) requests.
#include <gtest/gtest.h>
#include <httplib.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "server/api_error.h"
#include "server/prometheus_sample.h"
#include "server/protocol_test_util.h"
#include "server/serve_process.h"

namespace swiftkv::testing {

using server::Json;

inline constexpr const char* kApiKey = "test-key";

// What a streamed response brought: the status, each `data:` payload in order (the last one of
// a complete stream is "[DONE]"), and the body when it was not a stream.
struct StreamResult {
  int status = 0;
  std::vector<std::string> events;
  std::string body;
  bool ended() const { return !events.empty() && events.back() == "[DONE]"; }
  // The JSON events (all but [DONE]).
  std::vector<Json> chunks() const {
    std::vector<Json> parsed;
    for (const std::string& event : events)
      if (event != "[DONE]") parsed.push_back(Json::parse(event));
    return parsed;
  }
};

class StoriesServer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_dir_ = import_stories260k("server_stories260K");
    std::ofstream(model_dir_ / "chat_template.jinja") << kTestChatTemplate;
    server_ = std::make_unique<ServeProcess>(serve_args({}));
  }
  static void TearDownTestSuite() {
    if (server_) {
      EXPECT_EQ(server_->stop(SIGTERM), 0) << "swiftkv serve did not exit cleanly on SIGTERM";
    }
    server_.reset();
    std::filesystem::remove_all(model_dir_);
  }

  // f32 weights and KV (exact comparisons with the engine alone), one compute thread.
  static std::vector<std::string> serve_args(const std::vector<std::string>& extra) {
    std::vector<std::string> args = {"-m",
                                     model_dir_.string(),
                                     "--dtype",
                                     "f32",
                                     "--threads",
                                     "1",
                                     "--served-model-name",
                                     "stories",
                                     "--chat-template",
                                     (model_dir_ / "chat_template.jinja").string(),
                                     "--api-key",
                                     kApiKey};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  static std::unique_ptr<httplib::Client> client(const ServeProcess& server, bool with_key = true) {
    auto client = std::make_unique<httplib::Client>("127.0.0.1", server.port());
    if (with_key) client->set_bearer_token_auth(kApiKey);
    client->set_read_timeout(60);
    return client;
  }
  static std::unique_ptr<httplib::Client> client(bool with_key = true) { return client(*server_, with_key); }

  // POSTs JSON and expects `status`; returns the parsed response body.
  static Json post(const std::string& path, const Json& body, int status = 200) {
    auto result = client()->Post(path.c_str(), server::to_wire(body), "application/json");
    if (!result) {
      ADD_FAILURE() << "POST " << path << ": " << httplib::to_string(result.error());
      return nullptr;
    }
    EXPECT_EQ(result->status, status) << path << " " << result->body;
    return Json::parse(result->body);
  }

  // POSTs and reads the response as server-sent events. on_event may return false to hang up.
  static StreamResult post_stream(const ServeProcess& server, const std::string& path,
                                  const std::string& body,
                                  const std::function<bool(const std::string&)>& on_event = {}) {
    StreamResult result;
    std::string pending;
    httplib::Request request;
    request.method = "POST";
    request.path = path;
    request.body = body;
    request.set_header("Content-Type", "application/json");
    request.response_handler = [&](const httplib::Response& response) {
      result.status = response.status;
      return true;
    };
    request.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
      if (result.status != 200) {
        result.body.append(data, size);
        return true;
      }
      pending.append(data, size);
      for (size_t end; (end = pending.find("\n\n")) != std::string::npos; pending.erase(0, end + 2)) {
        const std::string event = pending.substr(0, end);
        EXPECT_TRUE(event.starts_with("data: ")) << event;
        result.events.push_back(event.substr(6));
        if (on_event && !on_event(result.events.back())) return false;
      }
      return true;
    };
    client(server)->send(request);
    return result;
  }
  static StreamResult post_stream(const std::string& path, const Json& body) {
    return post_stream(*server_, path, server::to_wire(body));
  }

  static std::string metrics_text(const ServeProcess& server) {
    auto result = client(server)->Get("/metrics");
    return result ? result->body : "";
  }

  static std::filesystem::path model_dir_;
  static std::unique_ptr<ServeProcess> server_;
};
inline std::filesystem::path StoriesServer::model_dir_;
inline std::unique_ptr<ServeProcess> StoriesServer::server_;

}  // namespace swiftkv::testing
