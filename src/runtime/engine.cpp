#include "runtime/engine.h"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <limits>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "common/error.h"
#include "runtime/scheduler.h"
#include "runtime/scoring.h"

namespace swiftkv::runtime {

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::None:
      return "none";
    case FinishReason::Stop:
      return "stop";
    case FinishReason::Length:
      return "length";
    case FinishReason::Abort:
      return "abort";
  }
  return "?";
}

namespace {

constexpr int64_t kMaxDefaultKvCacheBytes = int64_t{4} << 30;
// The logits of one all-rows chunk (prompt logprobs) take at most this many floats.
constexpr int64_t kMaxAllLogitsFloats = int64_t{1} << 26;

// What the engine keeps of a request besides its tokens (the scheduler holds those).
struct ActiveRequest {
  ActiveRequest(EngineRequest request, Engine::Callback callback, const tokenizer::Tokenizer& tokenizer,
                int32_t vocab_size)
      : request(std::move(request)),
        callback(std::move(callback)),
        sampler(this->request.sampling, vocab_size),
        stop_checker(this->request.stop),
        decoder(tokenizer, /*skip_special_tokens=*/true) {
    decoder.prime(this->request.prompt);
    if (this->request.prompt_logprobs) {
      for (int32_t token : this->request.prompt) prompt_logprobs.push_back({token, 0, {}});
      prompt_logprobs[0].logprob = std::numeric_limits<float>::quiet_NaN();  // nothing predicts it
    }
  }
  int64_t prompt_tokens() const { return static_cast<int64_t>(request.prompt.size()); }

  uint64_t id = 0;  // given when queued
  EngineRequest request;
  Engine::Callback callback;
  Sampler sampler;
  StopChecker stop_checker;
  tokenizer::StreamDecoder decoder;
  std::vector<TokenLogprob> prompt_logprobs;  // by position, filled in as prompt chunks are computed
  int64_t cached_prompt_tokens = 0;
};

struct Event {
  const Engine::Callback* callback;
  RequestOutput output;
};

TokenLogprob token_logprob(std::span<const float> row, int32_t token, int32_t top_n) {
  LogSoftmax log_softmax(row);
  TokenLogprob result{token, static_cast<float>(log_softmax.at(token)), {}};
  if (top_n > 0) result.top = log_softmax.top(top_n);
  return result;
}

// The options with the defaults filled in and checked, and the KV pool's size in blocks.
struct ResolvedOptions {
  EngineOptions options;
  int64_t num_blocks;
};

ResolvedOptions resolved(EngineOptions options, const model::Model& model) {
  const auto& config = model.config();
  const bool max_model_len_given = options.max_model_len != 0;
  if (!max_model_len_given) options.max_model_len = config.max_position_embeddings;
  if (options.max_model_len < 1 || options.max_model_len > config.max_position_embeddings)
    throw Error("max_model_len " + std::to_string(options.max_model_len) + " must be in [1, " +
                std::to_string(config.max_position_embeddings) + "] (the model's max_position_embeddings)");
  if (options.block_size < 1)
    throw Error("block_size must be >= 1, got " + std::to_string(options.block_size));
  if (options.max_num_seqs < 1)
    throw Error("max_num_seqs must be >= 1, got " + std::to_string(options.max_num_seqs));
  if (options.kv_cache_bytes < 0)
    throw Error("the KV cache memory must be >= 0 bytes, got " + std::to_string(options.kv_cache_bytes));
  if (options.path == model::Path::Teacher && !model.has_teacher())
    throw Error("SwiftKV off needs the teacher q/k/v: load the model with them (load_teacher)");
  if (options.path == model::Path::SwiftKV && !model.has_student())
    throw Error("the model was loaded without its SwiftKV weights (load_student)");
  const int64_t token_bytes = model.kv_bytes_per_token(options.path, options.kv_dtype);
  if (options.kv_cache_bytes == 0)
    options.kv_cache_bytes =
        std::min(kMaxDefaultKvCacheBytes, options.max_num_seqs * options.max_model_len * token_bytes);
  const int64_t num_blocks = options.kv_cache_bytes / (options.block_size * token_bytes);
  if (num_blocks == 0)
    throw Error("a KV cache of " + std::to_string(options.kv_cache_bytes) + " bytes holds no block of " +
                std::to_string(options.block_size) + " tokens (" +
                std::to_string(options.block_size * token_bytes) + " bytes with this model and KV dtype)");
  // Like vLLM: one request of max_model_len tokens must fit in the pool, or it would be advertised
  // and then refused forever. A defaulted length shrinks to the pool; a given one is an error.
  // (A request's last token never has its KV written: a pool of N tokens holds N + 1.)
  const int64_t longest = num_blocks * options.block_size + 1;
  if (options.max_model_len > longest) {
    if (max_model_len_given)
      throw Error("max_model_len " + std::to_string(options.max_model_len) +
                  " does not fit in the KV cache: " + std::to_string(options.kv_cache_bytes) +
                  " bytes hold a request of at most " + std::to_string(longest) + " tokens (" +
                  std::to_string(token_bytes) +
                  " bytes of KV each with this model and KV dtype); raise --kv-cache-memory or lower "
                  "--max-model-len");
    options.max_model_len = longest;
  }
  return {options, num_blocks};
}

}  // namespace

struct Engine::Impl {
  Impl(const model::Model& model, const tokenizer::Tokenizer& tokenizer, const EngineOptions& requested)
      : Impl(model, tokenizer, resolved(requested, model)) {}
  Impl(const model::Model& model, const tokenizer::Tokenizer& tokenizer, const ResolvedOptions& resolved_options)
      : model(model),
        tokenizer(tokenizer),
        options(resolved_options.options),
        vocab_size(static_cast<int32_t>(model.config().vocab_size)),
        skips_layers(options.path == model::Path::SwiftKV && model.config().swiftkv()),
        pool(model.make_pool(resolved_options.num_blocks, options.block_size, options.path, options.kv_dtype)),
        scheduler(SchedulerOptions{pool.num_blocks(), options.block_size, options.max_num_batched_tokens,
                                   options.max_num_seqs, options.enable_prefix_caching,
                                   std::max<int64_t>(1, kMaxAllLogitsFloats / vocab_size)}) {
    // Like vLLM: the model's (generation_config) eos ids plus the tokenizer's own.
    eos_ids.assign(model.config().eos_token_ids.begin(), model.config().eos_token_ids.end());
    for (int32_t id : tokenizer.eos_ids())
      if (std::find(eos_ids.begin(), eos_ids.end(), id) == eos_ids.end()) eos_ids.push_back(id);
    publish_stats();
  }

  uint64_t add(EngineRequest request, Callback callback);
  void cancel(uint64_t id);
  bool step();
  void take_new_work(std::vector<Event>& events);
  void run(const SchedulerOutput& scheduled, std::vector<Event>& events);
  void count_prompt_tokens(const ScheduledChunk& chunk, int64_t prompt_tokens);
  void take_logits(ActiveRequest& request, const ScheduledChunk& chunk, float* rows,
                   std::vector<Event>& events);
  void sample(ActiveRequest& request, std::span<float> row, std::vector<Event>& events);
  RequestOutput output_for(const ActiveRequest& request) const;
  void finish(ActiveRequest& request, RequestOutput output, FinishReason reason, std::vector<Event>& events);
  void abort_all();
  void publish_stats();
  void dispatch(std::vector<Event>& events);
  void loop();

  const model::Model& model;
  const tokenizer::Tokenizer& tokenizer;
  const EngineOptions options;
  const int32_t vocab_size;
  const bool skips_layers;  // prompt tokens without logits skip layers [M, L)
  std::vector<int32_t> eos_ids;
  model::KvPool pool;

  // The stepping thread's (under step_mutex).
  std::mutex step_mutex;
  Scheduler scheduler;
  std::unordered_map<uint64_t, std::unique_ptr<ActiveRequest>> requests;
  std::vector<std::unique_ptr<ActiveRequest>> finished;  // alive until their last event is out
  EngineStats counters;

  // Shared with the other threads (under mutex).
  mutable std::mutex mutex;
  std::condition_variable wake;
  uint64_t next_id = 1;
  std::vector<std::unique_ptr<ActiveRequest>> incoming;
  std::vector<uint64_t> cancelled;
  EngineStats published;
  bool stopping = false;
  std::thread thread;
};

uint64_t Engine::Impl::add(EngineRequest request, Callback callback) {
  const int64_t prompt_tokens = static_cast<int64_t>(request.prompt.size());
  if (request.prompt.empty()) throw Error("the prompt is empty (no tokens, not even BOS)");
  if (request.max_tokens < 1)
    throw Error("max_tokens must be >= 1, got " + std::to_string(request.max_tokens));
  if (request.logprobs < -1 || request.logprobs > vocab_size)
    throw Error("logprobs must be in [-1, " + std::to_string(vocab_size) + "], got " +
                std::to_string(request.logprobs));
  for (int32_t token : request.prompt)
    if (token < 0 || token >= vocab_size)
      throw Error("prompt token id " + std::to_string(token) + " is outside the vocabulary [0, " +
                  std::to_string(vocab_size) + ")");
  if (prompt_tokens + request.max_tokens > options.max_model_len)
    throw Error("the request needs " + std::to_string(prompt_tokens + request.max_tokens) + " tokens (" +
                std::to_string(prompt_tokens) + " prompt + max_tokens " + std::to_string(request.max_tokens) +
                "), the maximum context length is " + std::to_string(options.max_model_len));
  request.sampling.validate();
  scheduler.check_fits(prompt_tokens, request.max_tokens);  // reads only the pool's fixed geometry
  auto active =
      std::make_unique<ActiveRequest>(std::move(request), std::move(callback), tokenizer, vocab_size);
  std::lock_guard<std::mutex> lock(mutex);
  active->id = next_id++;
  incoming.push_back(std::move(active));
  wake.notify_all();
  return incoming.back()->id;
}

void Engine::Impl::cancel(uint64_t id) {
  std::lock_guard<std::mutex> lock(mutex);
  cancelled.push_back(id);
  wake.notify_all();
}

bool Engine::Impl::step() {
  std::vector<Event> events;
  take_new_work(events);
  bool worked = !events.empty();
  SchedulerOutput scheduled = scheduler.schedule();
  if (!scheduled.chunks.empty()) {
    try {
      run(scheduled, events);
    } catch (const std::exception&) {
      // Nothing of this batch can go on: its requests end and the rest run on. The error is
      // rethrown for the log, never put in the events (clients see stop_reason).
      for (const ScheduledChunk& chunk : scheduled.chunks) {
        auto found = requests.find(chunk.id);
        if (found == requests.end()) continue;  // finished before the failure
        finish(*found->second, output_for(*found->second), FinishReason::Abort, events);
      }
      publish_stats();
      dispatch(events);
      throw;
    }
    ++counters.steps;
  }
  worked = worked || !scheduled.empty();
  publish_stats();
  dispatch(events);
  return worked;
}

void Engine::Impl::take_new_work(std::vector<Event>& events) {
  std::vector<std::unique_ptr<ActiveRequest>> arrived;
  std::vector<uint64_t> to_cancel;
  {
    std::lock_guard<std::mutex> lock(mutex);
    arrived.swap(incoming);
    to_cancel.swap(cancelled);
  }
  for (auto& request : arrived) {
    scheduler.add(request->id, request->request.prompt, request->request.max_tokens,
                  request->request.prompt_logprobs);
    requests.emplace(request->id, std::move(request));
  }
  for (uint64_t id : to_cancel) {
    auto found = requests.find(id);
    if (found != requests.end())
      finish(*found->second, output_for(*found->second), FinishReason::Abort, events);
  }
}

void Engine::Impl::run(const SchedulerOutput& scheduled, std::vector<Event>& events) {
  std::vector<model::SequenceStep> steps;
  for (const ScheduledChunk& chunk : scheduled.chunks) {
    const Sequence& sequence = scheduler.sequence(chunk.id);
    steps.push_back({std::span<const int32_t>(sequence.tokens).subspan(chunk.begin, chunk.end - chunk.begin),
                     chunk.begin, &sequence.block_table, chunk.logits});
  }
  std::vector<float> logits = model.forward(steps, pool, options.path);
  scheduler.complete(scheduled);
  float* rows = logits.data();
  for (const ScheduledChunk& chunk : scheduled.chunks) {
    ActiveRequest& request = *requests.at(chunk.id);
    count_prompt_tokens(chunk, request.prompt_tokens());
    take_logits(request, chunk, rows, events);
    rows += model::logits_rows(chunk.logits, chunk.end - chunk.begin) * vocab_size;
  }
}

void Engine::Impl::count_prompt_tokens(const ScheduledChunk& chunk, int64_t prompt_tokens) {
  const int64_t prompt_end = std::min(chunk.end, prompt_tokens);
  if (prompt_end <= chunk.begin) return;
  counters.prompt_tokens += prompt_end - chunk.begin;
  if (!skips_layers) return;
  // Rows with logits ran every layer: all of them, or the chunk's last.
  const int64_t first_with_logits = chunk.end - model::logits_rows(chunk.logits, chunk.end - chunk.begin);
  counters.prompt_tokens_skipped += std::min(prompt_end, first_with_logits) - chunk.begin;
}

void Engine::Impl::take_logits(ActiveRequest& request, const ScheduledChunk& chunk, float* rows,
                               std::vector<Event>& events) {
  const size_t vocab = static_cast<size_t>(vocab_size);
  if (chunk.logits == model::Logits::None) return;
  if (chunk.logits == model::Logits::All) {
    // Row i predicts position begin + i + 1.
    const std::vector<int32_t>& prompt = request.request.prompt;
    const int32_t top_n = std::max(request.request.logprobs, 0);
    for (int64_t position = chunk.begin + 1; position <= chunk.end && position < request.prompt_tokens();
         ++position)
      request.prompt_logprobs[static_cast<size_t>(position)] = token_logprob(
          std::span<const float>(rows + static_cast<size_t>(position - 1 - chunk.begin) * vocab, vocab),
          prompt[static_cast<size_t>(position)], top_n);
  }
  if (chunk.end == static_cast<int64_t>(scheduler.sequence(request.id).tokens.size())) {
    const int64_t last_row = model::logits_rows(chunk.logits, chunk.end - chunk.begin) - 1;
    sample(request, std::span<float>(rows + static_cast<size_t>(last_row) * vocab, vocab), events);
  }
}

void Engine::Impl::sample(ActiveRequest& request, std::span<float> row, std::vector<Event>& events) {
  const EngineRequest& params = request.request;
  RequestOutput output = output_for(request);
  // Log-probabilities of the model's own distribution: before penalties and temperature.
  std::vector<float> raw;
  if (params.logprobs >= 0) raw.assign(row.begin(), row.end());
  const Sequence& sequence = scheduler.sequence(request.id);
  const auto tokens = std::span<const int32_t>(sequence.tokens);
  const int32_t token =
      request.sampler.sample(row, tokens.first(static_cast<size_t>(request.prompt_tokens())),
                             tokens.subspan(static_cast<size_t>(request.prompt_tokens())));
  scheduler.append_token(request.id, token);
  const int64_t generated = sequence.num_generated();
  ++counters.generation_tokens;
  output.generated_tokens = generated;
  output.tokens.push_back(token);
  if (params.logprobs >= 0) output.logprobs.push_back(token_logprob(raw, token, params.logprobs));
  if (generated == 1) {  // the request's first event
    output.prompt_logprobs = std::move(request.prompt_logprobs);
    output.cached_prompt_tokens = request.cached_prompt_tokens = sequence.cached_tokens;
  }

  FinishReason reason = FinishReason::None;
  if (!params.ignore_eos && std::find(eos_ids.begin(), eos_ids.end(), token) != eos_ids.end()) {
    reason = FinishReason::Stop;  // stop_reason stays empty, as vLLM's is None for eos
  } else {
    output.text = request.stop_checker.push(request.decoder.push(token));
    if (request.stop_checker.stopped()) {
      reason = FinishReason::Stop;
      output.stop_reason = request.stop_checker.stop_string();
    } else if (generated >= params.max_tokens) {
      reason = FinishReason::Length;
    }
  }
  if (reason == FinishReason::None) {
    events.push_back({&request.callback, std::move(output)});
    return;
  }
  if (!request.stop_checker.stopped()) {
    output.text += request.stop_checker.push(request.decoder.finish());
    // A stop string completed by the decoder's held-back bytes still ends with "stop".
    if (request.stop_checker.stopped()) {
      reason = FinishReason::Stop;
      output.stop_reason = request.stop_checker.stop_string();
    } else {
      output.text += request.stop_checker.finish();
    }
  }
  finish(request, std::move(output), reason, events);
}

RequestOutput Engine::Impl::output_for(const ActiveRequest& request) const {
  RequestOutput output;
  output.request_id = request.id;
  output.prompt_tokens = request.prompt_tokens();
  output.generated_tokens = scheduler.sequence(request.id).num_generated();
  output.cached_prompt_tokens = request.cached_prompt_tokens;
  return output;
}

void Engine::Impl::finish(ActiveRequest& request, RequestOutput output, FinishReason reason,
                          std::vector<Event>& events) {
  output.finish_reason = reason;
  events.push_back({&request.callback, std::move(output)});
  scheduler.finish(request.id);
  auto found = requests.find(request.id);
  finished.push_back(std::move(found->second));
  requests.erase(found);
}

void Engine::Impl::abort_all() {
  std::lock_guard<std::mutex> step_lock(step_mutex);
  std::vector<Event> events;
  take_new_work(events);
  while (!requests.empty()) {
    ActiveRequest& request = *requests.begin()->second;
    finish(request, output_for(request), FinishReason::Abort, events);
  }
  publish_stats();
  dispatch(events);
}

void Engine::Impl::publish_stats() {
  counters.running = scheduler.num_running();
  counters.waiting = scheduler.num_waiting();
  counters.kv_blocks_total = scheduler.blocks().num_blocks();
  counters.kv_blocks_used = scheduler.blocks().num_used_blocks();
  counters.preemptions = scheduler.preemptions();
  counters.prefix_cache_queries = scheduler.prefix_cache_queries();
  counters.prefix_cache_hits = scheduler.prefix_cache_hits();
  std::lock_guard<std::mutex> lock(mutex);
  published = counters;
}

void Engine::Impl::dispatch(std::vector<Event>& events) {
  // Every event goes out even when a callback throws; the first exception is rethrown after.
  std::exception_ptr failure;
  for (Event& event : events) {
    try {
      if (*event.callback) (*event.callback)(event.output);
    } catch (...) {
      if (!failure) failure = std::current_exception();
    }
  }
  events.clear();
  finished.clear();
  if (failure) std::rethrow_exception(failure);
}

void Engine::Impl::loop() {
  bool idle = false;  // the last step found nothing to do: wait for news
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex);
      wake.wait(lock, [&] {
        return stopping || !incoming.empty() || !cancelled.empty() ||
               (!idle && published.running + published.waiting > 0);
      });
      if (stopping) return;
    }
    try {
      std::lock_guard<std::mutex> step_lock(step_mutex);
      idle = !step();
    } catch (const std::exception& error) {
      std::fprintf(stderr, "swiftkv engine: %s\n", error.what());
    }
  }
}

Engine::Engine(const model::Model& model, const tokenizer::Tokenizer& tokenizer, const EngineOptions& options)
    : impl_(std::make_unique<Impl>(model, tokenizer, options)) {}

Engine::~Engine() { stop(); }

uint64_t Engine::add_request(EngineRequest request, Callback callback) {
  return impl_->add(std::move(request), std::move(callback));
}

void Engine::cancel(uint64_t request_id) { impl_->cancel(request_id); }

bool Engine::step() {
  std::lock_guard<std::mutex> step_lock(impl_->step_mutex);
  return impl_->step();
}

void Engine::start() {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  if (impl_->thread.joinable()) return;
  impl_->stopping = false;
  impl_->thread = std::thread([impl = impl_.get()] { impl->loop(); });
}

void Engine::stop() {
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->stopping = true;
    impl_->wake.notify_all();
  }
  if (impl_->thread.joinable()) impl_->thread.join();
  impl_->abort_all();
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  EngineStats stats = impl_->published;
  stats.waiting += static_cast<int64_t>(impl_->incoming.size());
  return stats;
}

const EngineOptions& Engine::options() const { return impl_->options; }

int64_t Engine::num_blocks() const { return impl_->pool.num_blocks(); }

}  // namespace swiftkv::runtime
