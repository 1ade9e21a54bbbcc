#pragma once
// Runs completion requests through the engine for the HTTP threads: admission (a bounded number
// of requests in flight), one engine request per prompt, the answer whole or streamed as
// server-sent events, cancellation when the client goes away, metrics, and shutdown.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <set>

#include "runtime/engine.h"
#include "server/metrics.h"
#include "server/openai_protocol.h"

namespace httplib {
struct Response;
}

namespace swiftkv::server {

class CompletionService {
 public:
  // capacity: engine requests in flight at most (running + waiting); more get 503.
  CompletionService(runtime::Engine& engine, const ServedModel& model, Metrics& metrics, int64_t capacity);

  // Answers the request in `response`: the whole JSON, or a stream that the HTTP thread then
  // writes as the engine produces tokens. Throws ApiError before anything is sent: 503 when the
  // server is full or shutting down, 400 when the engine refuses a prompt.
  void serve(CompletionRequest request, httplib::Response& response);

  // Refuses new requests and aborts the ones in flight (they end with finish_reason "abort");
  // returns when each has written its last event (a stream: its final chunk and [DONE]), or
  // after `timeout`. The HTTP server stops after it: httplib cuts off streams still open.
  void shut_down(std::chrono::milliseconds timeout = std::chrono::seconds(5));

  // Engine requests in flight (for tests and the thread pool's sizing).
  int64_t capacity() const { return capacity_; }

 private:
  friend struct CompletionJob;
  // Called by a job for each of its engine requests that ends (or never started).
  void release(uint64_t engine_id, bool started);
  // Called once by each admitted job when its response is complete (or abandoned).
  void closed();

  runtime::Engine& engine_;
  const ServedModel& model_;
  Metrics& metrics_;
  const int64_t capacity_;
  std::mutex mutex_;
  int64_t in_flight_ = 0;
  bool shutting_down_ = false;
  std::set<uint64_t> active_;  // engine ids in flight, aborted on shutdown
  int64_t open_jobs_ = 0;      // admitted HTTP requests whose response is not complete
  std::condition_variable all_closed_;
};

}  // namespace swiftkv::server
