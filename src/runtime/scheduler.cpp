#include "runtime/scheduler.h"

#include <algorithm>
#include <string>

#include "common/error.h"

namespace swiftkv::runtime {

namespace {
void require_positive(int64_t value, const char* name) {
  if (value < 1) throw Error(std::string(name) + " must be >= 1, got " + std::to_string(value));
}
}  // namespace

Scheduler::Scheduler(const SchedulerOptions& options)
    : options_(options), blocks_(options.num_blocks, options.block_size, options.enable_prefix_caching) {
  require_positive(options.max_num_batched_tokens, "max_num_batched_tokens");
  require_positive(options.max_num_seqs, "max_num_seqs");
  require_positive(options.max_all_logits_tokens, "max_all_logits_tokens");
}

int64_t Scheduler::blocks_for(int64_t tokens) const {
  return (tokens + options_.block_size - 1) / options_.block_size;
}

int64_t Scheduler::check_fits(int64_t prompt_tokens, int64_t max_tokens) const {
  const int64_t positions = prompt_tokens + max_tokens - 1, needed = blocks_for(positions);
  if (needed > blocks_.num_blocks())
    throw Error("the request needs " + std::to_string(needed) + " KV blocks of " +
                std::to_string(options_.block_size) + " tokens (" + std::to_string(prompt_tokens) +
                " prompt tokens + max_tokens " + std::to_string(max_tokens) + "), the KV cache holds " +
                std::to_string(blocks_.num_blocks()) +
                " blocks: lower max_tokens or raise --kv-cache-memory");
  return needed;
}

void Scheduler::add(uint64_t id, std::vector<int32_t> prompt, int64_t max_tokens, bool prompt_logits) {
  if (prompt.empty()) throw Error("the prompt is empty (no tokens, not even BOS)");
  check_fits(static_cast<int64_t>(prompt.size()), max_tokens);
  if (sequences_.contains(id)) throw Error("request id " + std::to_string(id) + " is already scheduled");
  Sequence sequence;
  sequence.id = id;
  sequence.num_prompt_tokens = static_cast<int64_t>(prompt.size());
  sequence.tokens = std::move(prompt);
  sequence.prompt_logits = prompt_logits;
  sequences_.emplace(id, std::move(sequence));
  waiting_.push_back(id);
}

Sequence& Scheduler::at(uint64_t id) {
  auto found = sequences_.find(id);
  if (found == sequences_.end()) throw Error("unknown request id " + std::to_string(id));
  return found->second;
}

const Sequence& Scheduler::sequence(uint64_t id) const {
  auto found = sequences_.find(id);
  if (found == sequences_.end()) throw Error("unknown request id " + std::to_string(id));
  return found->second;
}

ScheduledChunk Scheduler::chunk(const Sequence& sequence, int64_t budget) const {
  const bool all = sequence.wants_prompt_logits();
  int64_t count = std::min(sequence.remaining(), budget);
  if (all) count = std::min(count, options_.max_all_logits_tokens);
  ScheduledChunk chunk{sequence.id, sequence.num_computed, sequence.num_computed + count,
                       model::Logits::None};
  if (all)
    chunk.logits = model::Logits::All;
  else if (chunk.end == static_cast<int64_t>(sequence.tokens.size()))
    chunk.logits = model::Logits::Last;
  return chunk;
}

void Scheduler::release_blocks(Sequence& sequence) {
  // Last block first: of a finished request's cached blocks, its tail is evicted first and the
  // prefix shared with others survives longest.
  for (auto block = sequence.block_table.rbegin(); block != sequence.block_table.rend(); ++block)
    blocks_.release(*block);
  sequence.block_table.clear();
  sequence.block_hashes.clear();
  sequence.num_computed = 0;
}

void Scheduler::preempt(Sequence& sequence, SchedulerOutput& output) {
  release_blocks(sequence);
  running_.erase(std::find(running_.begin(), running_.end(), sequence.id));
  waiting_.push_front(sequence.id);
  output.preempted.push_back(sequence.id);
  ++preemptions_;
}

bool Scheduler::reserve_decode_block(Sequence& sequence, SchedulerOutput& output) {
  while (blocks_for(sequence.num_computed + 1) > static_cast<int64_t>(sequence.block_table.size())) {
    if (blocks_.num_free_blocks() > 0) {
      sequence.block_table.push_back(blocks_.allocate());
      return true;
    }
    Sequence& victim = at(running_.back());
    preempt(victim, output);
    if (&victim == &sequence) return false;
  }
  return true;
}

bool Scheduler::admit(Sequence& sequence) {
  const int64_t length = static_cast<int64_t>(sequence.tokens.size());
  PrefixMatch match;
  if (blocks_.prefix_caching() && !sequence.wants_prompt_logits()) {
    // Never the block holding the last token: its logits are needed.
    match = blocks_.match_prefix(sequence.tokens, (length - 1) / options_.block_size);
  }
  const int64_t matched = static_cast<int64_t>(match.blocks.size());
  const int64_t fresh = blocks_for(length) - matched;
  if (fresh > blocks_.num_free_blocks() - blocks_.count_unreferenced(match.blocks)) return false;
  if (blocks_.prefix_caching()) {
    prefix_cache_queries_ += length;
    prefix_cache_hits_ += matched * options_.block_size;
  }
  for (int32_t block : match.blocks) blocks_.acquire(block);
  sequence.block_table = std::move(match.blocks);
  sequence.block_hashes = std::move(match.hashes);
  for (int64_t b = 0; b < fresh; ++b) sequence.block_table.push_back(blocks_.allocate());
  sequence.num_computed = sequence.cached_tokens = matched * options_.block_size;
  return true;
}

SchedulerOutput Scheduler::schedule() {
  SchedulerOutput output;
  int64_t budget = options_.max_num_batched_tokens;
  // 1. Decodes. Victims are taken from the back, so the requests before i are never preempted.
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    Sequence& sequence = at(running_[i]);
    if (sequence.remaining() != 1 || !reserve_decode_block(sequence, output)) continue;
    output.chunks.push_back(chunk(sequence, budget));
    budget -= 1;
  }
  // 2. Prefills under way: their blocks were taken at admission.
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    const Sequence& sequence = at(running_[i]);
    if (sequence.remaining() <= 1) continue;
    output.chunks.push_back(chunk(sequence, budget));
    budget -= output.chunks.back().end - output.chunks.back().begin;
  }
  // 3. Admissions, unless this step had to preempt (the victim would come straight back).
  while (output.preempted.empty() && budget > 0 && !waiting_.empty() &&
         static_cast<int64_t>(running_.size()) < options_.max_num_seqs) {
    Sequence& sequence = at(waiting_.front());
    if (!admit(sequence)) break;
    waiting_.pop_front();
    running_.push_back(sequence.id);
    output.chunks.push_back(chunk(sequence, budget));
    budget -= output.chunks.back().end - output.chunks.back().begin;
  }
  return output;
}

void Scheduler::complete(const SchedulerOutput& output) {
  const int64_t block_size = options_.block_size;
  for (const ScheduledChunk& chunk : output.chunks) {
    Sequence& sequence = at(chunk.id);
    if (chunk.begin != sequence.num_computed || chunk.end > static_cast<int64_t>(sequence.tokens.size()))
      throw Error("scheduler: chunk [" + std::to_string(chunk.begin) + ", " + std::to_string(chunk.end) +
                  ") of request " + std::to_string(chunk.id) + " does not continue its sequence");
    sequence.num_computed = chunk.end;
    if (!blocks_.prefix_caching()) continue;
    for (size_t b = sequence.block_hashes.size(); static_cast<int64_t>(b + 1) * block_size <= chunk.end;
         ++b) {
      const uint64_t parent = b == 0 ? kRootBlockHash : sequence.block_hashes[b - 1];
      auto tokens = std::span<const int32_t>(sequence.tokens).subspan(b * block_size, block_size);
      sequence.block_hashes.push_back(blocks_.commit(sequence.block_table[b], parent, tokens));
    }
  }
}

void Scheduler::append_token(uint64_t id, int32_t token) {
  Sequence& sequence = at(id);
  if (sequence.remaining() != 0)
    throw Error("scheduler: request " + std::to_string(id) + " got a token before its sequence was computed");
  sequence.tokens.push_back(token);
}

void Scheduler::finish(uint64_t id) {
  auto found = sequences_.find(id);
  if (found == sequences_.end()) return;
  release_blocks(found->second);
  if (auto running = std::find(running_.begin(), running_.end(), id); running != running_.end())
    running_.erase(running);
  if (auto waiting = std::find(waiting_.begin(), waiting_.end(), id); waiting != waiting_.end())
    waiting_.erase(waiting);
  sequences_.erase(found);
}

}  // namespace swiftkv::runtime
