#pragma once
// Continuous batching, as bookkeeping only (no model): which tokens of which requests one
// engine step computes, and which KV blocks hold them.
//
// A request is a sequence of tokens (its prompt, then what it generated) of which the first
// num_computed have their K/V in the pool. Every step, within max_num_batched_tokens:
//   1. each running request with one token left (a decode) gets it, in admission order; when
//      it needs a block and none is free, the most recently admitted running request is
//      preempted (blocks released, num_computed back to 0, to the front of the queue: it is
//      recomputed later, prompt and generated tokens, as one prefill);
//   2. running requests still prefilling get their next chunk (chunked prefill);
//   3. waiting requests are admitted first come, first served, while fewer than max_num_seqs
//      run and the pool can hold the whole prefill (blocks for all of it are taken at
//      admission, after the leading full blocks found in the prefix cache). Nothing is
//      admitted in a step that preempted.
// A request that could not fit in the pool alone is refused when added.
#include <cstdint>
#include <deque>
#include <span>
#include <unordered_map>
#include <vector>

#include "model/model.h"
#include "runtime/block_manager.h"

namespace swiftkv::runtime {

struct SchedulerOptions {
  int64_t num_blocks = 0;
  int64_t block_size = 16;
  int64_t max_num_batched_tokens = 2048;
  int64_t max_num_seqs = 64;
  bool enable_prefix_caching = true;
  // The most tokens in one chunk that wants every row's logits (prompt logprobs): those rows
  // are vocabulary wide.
  int64_t max_all_logits_tokens = 512;
};

struct Sequence {
  uint64_t id = 0;
  std::vector<int32_t> tokens;  // the prompt, then the generated tokens
  int64_t num_prompt_tokens = 0;
  bool prompt_logits = false;  // every prompt row's logits, until the first token is generated
  int64_t num_computed = 0;    // leading tokens whose K/V is in the pool
  model::BlockTable block_table;
  std::vector<uint64_t> block_hashes;  // chain hashes of the leading full blocks
  int64_t cached_tokens = 0;           // taken from the prefix cache at the latest admission

  int64_t num_generated() const { return static_cast<int64_t>(tokens.size()) - num_prompt_tokens; }
  int64_t remaining() const { return static_cast<int64_t>(tokens.size()) - num_computed; }
  bool wants_prompt_logits() const { return prompt_logits && num_generated() == 0; }
};

// Tokens [begin, end) of a request computed this step.
struct ScheduledChunk {
  uint64_t id = 0;
  int64_t begin = 0, end = 0;
  // Last: end is the sequence's end, its last row samples the next token; All: every row (the
  // last one samples when end is the sequence's end); None: a prompt chunk before the last.
  model::Logits logits = model::Logits::None;
};

struct SchedulerOutput {
  std::vector<ScheduledChunk> chunks;
  std::vector<uint64_t> preempted;
  bool empty() const { return chunks.empty() && preempted.empty(); }
};

class Scheduler {
 public:
  // Throws swiftkv::Error naming a bad option.
  explicit Scheduler(const SchedulerOptions& options);

  // The blocks a request needs at most (prompt + max_tokens - 1 positions hold K/V: the last
  // generated token is never fed back). Throws swiftkv::Error when that exceeds the pool.
  int64_t check_fits(int64_t prompt_tokens, int64_t max_tokens) const;
  // Queues a request (check_fits first). Ids must be unique.
  void add(uint64_t id, std::vector<int32_t> prompt, int64_t max_tokens, bool prompt_logits = false);
  // The next step. Sequences stay where they are (their tokens and block tables may be read)
  // until the next call to add, finish or schedule.
  SchedulerOutput schedule();
  // The step's chunks were computed: advances num_computed and puts newly full blocks in the
  // prefix cache.
  void complete(const SchedulerOutput& output);
  // A token sampled for a request whose chunk reached its end.
  void append_token(uint64_t id, int32_t token);
  // Removes a request (finished or cancelled) and releases its blocks. Unknown ids are ignored.
  void finish(uint64_t id);

  const Sequence& sequence(uint64_t id) const;
  int64_t num_running() const { return static_cast<int64_t>(running_.size()); }
  int64_t num_waiting() const { return static_cast<int64_t>(waiting_.size()); }
  const BlockManager& blocks() const { return blocks_; }
  const SchedulerOptions& options() const { return options_; }

  // Counters since construction.
  int64_t preemptions() const { return preemptions_; }
  int64_t prefix_cache_queries() const { return prefix_cache_queries_; }  // tokens looked up
  int64_t prefix_cache_hits() const { return prefix_cache_hits_; }        // tokens found

 private:
  Sequence& at(uint64_t id);
  int64_t blocks_for(int64_t tokens) const;
  // The next chunk of a running request, at most `budget` tokens.
  ScheduledChunk chunk(const Sequence& sequence, int64_t budget) const;
  // Gives a decoding request the block its next token needs, preempting others (newest first,
  // possibly itself). False when it was preempted itself.
  bool reserve_decode_block(Sequence& sequence, SchedulerOutput& output);
  void preempt(Sequence& sequence, SchedulerOutput& output);
  void release_blocks(Sequence& sequence);
  // Admits the first waiting request when the pool can hold its prefill.
  bool admit(Sequence& sequence);

  SchedulerOptions options_;
  BlockManager blocks_;
  std::unordered_map<uint64_t, Sequence> sequences_;
  std::vector<uint64_t> running_;  // in admission order
  std::deque<uint64_t> waiting_;   // first come, first served; preempted requests go first
  int64_t preemptions_ = 0, prefix_cache_queries_ = 0, prefix_cache_hits_ = 0;
};

}  // namespace swiftkv::runtime
