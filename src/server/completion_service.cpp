#include "server/completion_service.h"

#include <httplib.h>

#include <algorithm>
#include <cstdio>

#include "server/openai_responses.h"
#include "server/request_stream.h"

namespace swiftkv::server {

namespace {

double seconds(Clock::duration duration) { return std::chrono::duration<double>(duration).count(); }

}  // namespace

// One HTTP request's engine requests (one per prompt) and the response built from their events.
// Lives on the heap (its choices refer to its request) as long as the response needs it; when
// it goes, engine requests still running are cancelled (a client that went away mid-stream).
struct CompletionJob {
  CompletionJob(CompletionService& service, CompletionRequest request_)
      : service(service), request(std::move(request_)), stream(std::make_shared<RequestStream>()) {
    header = new_response_header(request.endpoint, service.model_.name);
    for (size_t i = 0; i < request.prompts.size(); ++i)
      choices.emplace_back(request, i, *service.model_.tokenizer);
    first_token_time.resize(choices.size());
  }
  CompletionJob(const CompletionJob&) = delete;
  CompletionJob& operator=(const CompletionJob&) = delete;

  ~CompletionJob() {
    for (size_t i = 0; i < choices.size() && admitted; ++i) {
      if (choices[i].finished()) continue;
      const bool started = i < engine_ids.size();
      if (started) {
        service.engine_.cancel(engine_ids[i]);
        service.metrics_.request_finished(runtime::FinishReason::Abort, seconds(Clock::now() - arrival), -1);
      }
      service.release(started ? engine_ids[i] : 0, started);
    }
    close();
  }

  bool finished() const {
    return std::ranges::all_of(choices, [](const ChoiceBuilder& choice) { return choice.finished(); });
  }

  // The response is complete (or will never be): shutdown need not wait for it any longer.
  void close() {
    if (!admitted || closed) return;
    closed = true;
    service.closed();
  }

  // Applies the events; returns the stream chunks they make.
  std::string apply(const std::vector<StreamEvent>& events) {
    std::string chunks;
    for (const StreamEvent& event : events) {
      ChoiceBuilder& choice = choices[event.choice];
      if (choice.finished()) continue;
      Json delta = choice.add(event.output);
      if (!event.output.tokens.empty() && first_token_time[event.choice] == Clock::time_point()) {
        first_token_time[event.choice] = event.time;
        service.metrics_.first_token(seconds(event.time - arrival));
      }
      if (choice.finished()) finish(event);
      if (request.stream && !delta.is_null()) chunks += sse_event(chunk_json(header, Json::array({delta})));
    }
    return chunks;
  }

  void finish(const StreamEvent& event) {
    const int64_t generated = event.output.generated_tokens;
    const Clock::time_point first = first_token_time[event.choice];
    const double tpot = generated >= 2 && first != Clock::time_point()
                            ? seconds(event.time - first) / static_cast<double>(generated - 1)
                            : -1;
    service.metrics_.request_finished(event.output.finish_reason, seconds(event.time - arrival), tpot);
    service.release(engine_ids.at(event.choice), true);
  }

  Json usage() const {
    int64_t prompt_tokens = 0, completion_tokens = 0;
    for (const ChoiceBuilder& choice : choices) {
      prompt_tokens += choice.prompt_tokens();
      completion_tokens += choice.completion_tokens();
    }
    return usage_json(prompt_tokens, completion_tokens);
  }

  // Chat streams open with the assistant role, before any token.
  std::string opening() const {
    if (request.endpoint != Endpoint::ChatCompletions) return {};
    Json deltas = Json::array();
    for (const ChoiceBuilder& choice : choices) deltas.push_back(choice.role_delta());
    return sse_event(chunk_json(header, std::move(deltas)));
  }

  std::string closing() const {
    std::string text;
    if (request.include_usage) {
      Json chunk = chunk_json(header, Json::array());
      chunk["usage"] = usage();
      text += sse_event(chunk);
    }
    return text + kSseDone;
  }

  Json whole_response() const {
    Json list = Json::array();
    for (const ChoiceBuilder& choice : choices) list.push_back(choice.choice());
    return response_json(header, std::move(list), usage());
  }

  CompletionService& service;
  const CompletionRequest request;
  ResponseHeader header;
  std::shared_ptr<RequestStream> stream;
  std::vector<ChoiceBuilder> choices;
  std::vector<uint64_t> engine_ids;  // of the prompts added so far
  std::vector<Clock::time_point> first_token_time;
  Clock::time_point arrival = Clock::now();
  bool admitted = false;  // counted in the service's requests in flight
  bool opened = false;
  bool closed = false;
};

namespace {

// Writes the stream's next chunks (the opening, then what the engine produced); false when the
// client went away.
bool write_stream(CompletionJob& job, httplib::DataSink& sink) {
  std::string text;
  if (!job.opened) {
    job.opened = true;
    text = job.opening();
  } else {
    text = job.apply(job.stream->wait());
  }
  if (job.finished()) text += job.closing();
  // A failed write is a client that went away: returning false ends the response, and the
  // job's destructor cancels what is still running.
  if (!text.empty() && !sink.write(text.data(), text.size())) return false;
  if (job.finished()) {
    sink.done();  // writes the chunked body's terminator
    job.close();
  }
  return true;
}

}  // namespace

CompletionService::CompletionService(runtime::Engine& engine, const ServedModel& model, Metrics& metrics,
                                     int64_t capacity)
    : engine_(engine), model_(model), metrics_(metrics), capacity_(capacity) {}

void CompletionService::serve(CompletionRequest request, httplib::Response& response) {
  auto job = std::make_shared<CompletionJob>(*this, std::move(request));
  const auto prompts = static_cast<int64_t>(job->choices.size());
  if (prompts > capacity_)
    throw bad_request("the request has " + std::to_string(prompts) + " prompts and at most " +
                          std::to_string(capacity_) +
                          " can be in flight (--max-num-seqs + --max-waiting-requests); send fewer at once",
                      "prompt");
  {
    std::lock_guard lock(mutex_);
    if (shutting_down_) throw ApiError(503, "service_unavailable", "the server is shutting down");
    if (in_flight_ + prompts > capacity_)
      throw ApiError(
          503, "service_unavailable",
          "the server is full: " + std::to_string(in_flight_) + " of " + std::to_string(capacity_) +
              " requests (--max-num-seqs + --max-waiting-requests) are running or waiting; retry later");
    in_flight_ += prompts;
    ++open_jobs_;
  }
  job->admitted = true;  // from here on the job releases what it reserved
  for (size_t i = 0; i < job->choices.size(); ++i) {
    runtime::EngineRequest engine_request = job->request.engine;
    engine_request.prompt = job->request.prompts[i].ids;
    uint64_t id = 0;
    try {
      id = engine_.add_request(std::move(engine_request), stream_callback(job->stream, i));
    } catch (const Error& error) {
      throw bad_request(error.what(), "prompt");  // the job cancels the prompts added before
    }
    job->engine_ids.push_back(id);
    metrics_.request_admitted(static_cast<int64_t>(job->request.prompts[i].ids.size()));
    std::lock_guard lock(mutex_);
    active_.insert(id);
    if (shutting_down_) engine_.cancel(id);
  }

  if (!job->request.stream) {
    while (!job->finished()) job->apply(job->stream->wait());
    response.set_content(to_wire(job->whole_response()), "application/json");
    job->close();
    return;
  }
  response.set_header("Cache-Control", "no-cache");
  response.set_chunked_content_provider("text/event-stream", [job](size_t, httplib::DataSink& sink) {
    try {
      return write_stream(*job, sink);
    } catch (const std::exception& error) {  // ends the response instead of std::terminate
      std::fprintf(stderr, "swiftkv serve: a stream failed: %s\n", error.what());
      return false;
    }
  });
}

void CompletionService::release(uint64_t engine_id, bool started) {
  std::lock_guard lock(mutex_);
  --in_flight_;
  if (started) active_.erase(engine_id);
}

void CompletionService::closed() {
  std::lock_guard lock(mutex_);
  if (--open_jobs_ == 0) all_closed_.notify_all();
}

void CompletionService::shut_down(std::chrono::milliseconds timeout) {
  std::set<uint64_t> active;
  {
    std::lock_guard lock(mutex_);
    shutting_down_ = true;
    active = active_;
  }
  for (uint64_t id : active) engine_.cancel(id);
  std::unique_lock lock(mutex_);
  all_closed_.wait_for(lock, timeout, [this] { return open_jobs_ == 0; });
}

}  // namespace swiftkv::server
