#include "server/request_stream.h"

namespace swiftkv::server {

void RequestStream::push(size_t choice, const runtime::RequestOutput& output) {
  {
    std::lock_guard lock(mutex_);
    events_.push_back({choice, output, Clock::now()});
  }
  ready_.notify_one();
}

std::vector<StreamEvent> RequestStream::wait() {
  std::unique_lock lock(mutex_);
  ready_.wait(lock, [this] { return !events_.empty(); });
  std::vector<StreamEvent> events;
  events.swap(events_);
  return events;
}

runtime::Engine::Callback stream_callback(std::shared_ptr<RequestStream> stream, size_t choice) {
  return [stream = std::move(stream), choice](const runtime::RequestOutput& output) {
    stream->push(choice, output);
  };
}

}  // namespace swiftkv::server
