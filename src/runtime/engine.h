#pragma once
// The serving engine: many requests over one paged KV pool, continuous batching.
//
// Each step() the scheduler picks, within --max-num-batched-tokens and --max-num-seqs,
// one decode token of every running request plus prompt chunks (chunked prefill) of
// waiting/prefilling ones, and runs them as ONE Model::forward batch: layers [0, M) and
// SingleInputKV on every token, layers [M, L) only on the rows that need logits (the last
// token of a request's final prompt chunk, and decode tokens). When the pool runs out of
// blocks, the most recently admitted running request is preempted: its blocks are freed
// and it is later recomputed (prompt + tokens generated so far) as a new prefill.
// Full blocks are cached by a hash of the token prefix (prefix caching, can be turned off).
//
// Thread-safety: add_request / cancel / stats may be called from any thread. step() runs
// on one thread at a time: either the background loop (start()/stop()) or the caller (tests).
// Callbacks run on the stepping thread and must not block for long.
//
// Events: a request's callback gets one event per step in which it generated a token (the
// first one also carries the prompt logprobs), and exactly one final event (finish_reason
// != None; it may carry the last token and text, or nothing, as for Abort). After it, the
// callback is never called again and is destroyed. Callbacks may call add_request, cancel
// and stats (which never wait for a step), never step / start / stop. A callback that throws
// does not stop the other events; step() rethrows the first exception afterwards (the
// background loop prints it to stderr and goes on).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/model.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

namespace swiftkv::runtime {

struct EngineOptions {
  model::Path path = model::Path::SwiftKV;
  model::KvDType kv_dtype = model::KvDType::BF16;
  int64_t block_size = 16;
  // Pool budget; 0 = enough for max_num_seqs full-length requests, capped at 4 GiB.
  int64_t kv_cache_bytes = 0;
  // 0 = the config's max_position_embeddings, shrunk to the longest request the pool holds; a
  // given length the pool cannot hold is an error.
  int64_t max_model_len = 0;
  int64_t max_num_batched_tokens = 2048;
  int64_t max_num_seqs = 64;
  bool enable_prefix_caching = true;
};

struct EngineRequest {
  std::vector<int32_t> prompt;  // token ids, BOS included when wanted
  int32_t max_tokens = 16;
  SamplingParams sampling;
  std::vector<std::string> stop;  // stop strings (not included in the output)
  bool ignore_eos = false;
  // Log-probabilities: -1 none; N >= 0: the chosen token's plus the top N alternatives.
  int32_t logprobs = -1;
  // Also for the prompt tokens (echo). Computed in the training form over the whole prompt;
  // such a request never takes its KV from the prefix cache.
  bool prompt_logprobs = false;
};

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0;                           // NaN for the first prompt token (nothing predicts it)
  std::vector<std::pair<int32_t, float>> top;  // the N most likely (id, logprob), best first
};

enum class FinishReason { None, Stop, Length, Abort };
const char* finish_reason_name(FinishReason reason);  // "none", "stop", "length", "abort"

// One event for a request: what became available since its previous event.
struct RequestOutput {
  uint64_t request_id = 0;
  std::vector<int32_t> tokens;         // newly generated ids
  std::string text;                    // newly emittable text (held back while it may start a stop string)
  std::vector<TokenLogprob> logprobs;  // for `tokens`, when requested
  std::vector<TokenLogprob> prompt_logprobs;        // once, in the first event, when requested
  FinishReason finish_reason = FinishReason::None;  // != None: the last event of the request
  // The stop string that ended it; empty otherwise (eos, length, abort, a failed batch).
  std::string stop_reason;
  int64_t prompt_tokens = 0;  // totals so far
  int64_t generated_tokens = 0;
  int64_t cached_prompt_tokens = 0;  // prompt tokens served from the prefix cache
};

struct EngineStats {
  int64_t running = 0, waiting = 0;
  // used: held by requests (cached-but-free blocks excluded).
  int64_t kv_blocks_total = 0, kv_blocks_used = 0;
  // Counters since start.
  int64_t prompt_tokens = 0;          // prompt tokens computed (prefix-cache hits excluded)
  int64_t prompt_tokens_skipped = 0;  // of those, tokens that did not run layers [M, L) (SwiftKV)
  int64_t generation_tokens = 0;
  int64_t prefix_cache_queries = 0, prefix_cache_hits = 0;  // in tokens
  int64_t preemptions = 0;
  int64_t steps = 0;
};

class Engine {
 public:
  using Callback = std::function<void(const RequestOutput&)>;
  Engine(const model::Model& model, const tokenizer::Tokenizer& tokenizer, const EngineOptions& options);
  ~Engine();  // stops the loop; unfinished requests get a final Abort event

  // Validates (throws swiftkv::Error naming the problem: empty prompt, prompt + max_tokens
  // over max_model_len, a prompt needing more blocks than the pool has, bad token ids, bad
  // sampling parameters) and queues the request. Returns its id.
  uint64_t add_request(EngineRequest request, Callback callback);
  // Finishes the request with FinishReason::Abort (one final event) and frees its blocks.
  // Unknown or finished ids are ignored. Takes effect at the next step (the loop wakes for it).
  void cancel(uint64_t request_id);

  // One scheduling step. Returns false when there was nothing to do. When the model fails, the
  // requests of that batch end with Abort and the error is rethrown.
  bool step();
  // Background loop that steps while there is work and sleeps otherwise. No-op when running.
  void start();
  // Stops the loop (waiting for its current step) and ends every unfinished request with an
  // Abort event, on the calling thread. start() may be called again afterwards.
  void stop();

  EngineStats stats() const;
  const EngineOptions& options() const;  // with defaults resolved (max_model_len, kv_cache_bytes)
  int64_t num_blocks() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace swiftkv::runtime
