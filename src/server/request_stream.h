#pragma once
// The hand-off between the engine's stepping thread and the HTTP thread serving a request:
// the engine callback queues events (never blocking for long), the HTTP thread waits for them.
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <vector>

#include "runtime/engine.h"

namespace swiftkv::server {

using Clock = std::chrono::steady_clock;

struct StreamEvent {
  size_t choice = 0;  // which of the HTTP request's prompts
  runtime::RequestOutput output;
  Clock::time_point time;  // when the engine produced it (for TTFT / TPOT)
};

class RequestStream {
 public:
  void push(size_t choice, const runtime::RequestOutput& output);
  // Blocks until there is at least one event; returns every queued event, oldest first.
  std::vector<StreamEvent> wait();

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::vector<StreamEvent> events_;
};

// The engine callback for one prompt: it keeps the stream alive until the engine drops it.
runtime::Engine::Callback stream_callback(std::shared_ptr<RequestStream> stream, size_t choice);

}  // namespace swiftkv::server
