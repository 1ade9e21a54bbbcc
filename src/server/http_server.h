#pragma once
// The OpenAI-compatible HTTP server (cpp-httplib): routes, API-key check, OpenAI-style errors,
// the thread pool, lifecycle. The protocol lives in openai_protocol / openai_responses, the
// engine plumbing in completion_service.
//
//   POST /v1/completions, /v1/chat/completions   (stream: server-sent events)
//   GET  /v1/models, /health, /metrics
//   POST /tokenize, /detokenize                  (vLLM's)
#include <cstdint>
#include <memory>
#include <string>

#include "runtime/engine.h"
#include "server/openai_protocol.h"

namespace swiftkv::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;                     // 0: any free port (bind() tells which)
  std::string api_key;                 // when set, /v1/* needs "Authorization: Bearer <key>"
  int64_t max_waiting_requests = 128;  // beyond --max-num-seqs running requests; more get 503
  std::string model_root;              // shown as `root` in /v1/models
};

class HttpServer {
 public:
  // The engine must be started (or stepped by someone); model and engine outlive the server.
  HttpServer(runtime::Engine& engine, const ServedModel& model, const ServerOptions& options);
  ~HttpServer();

  // Binds host:port and returns the bound port; throws swiftkv::Error when it cannot.
  int bind();
  // Serves on the bound socket until stop(). Returns after the HTTP threads are joined.
  void run();
  // Thread-safe (not async-signal-safe): refuses new requests, aborts the ones in flight, waits
  // (at most 5 s) until their responses are complete (streams: the "abort" chunk and [DONE]),
  // and stops listening.
  void stop();

  // HTTP threads: every request the engine may hold (running + waiting) can be served at once,
  // with threads to spare for /health, /metrics and new requests that are to be refused.
  size_t thread_count() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace swiftkv::server
