// Continuous batching bookkeeping, run against a fake model: chunks, budgets, preemption by
// recompute, prefix caching.
#include "runtime/scheduler.h"

#include <gtest/gtest.h>

#include <map>

#include "expect_error.h"

namespace swiftkv::runtime {
namespace {

using model::Logits;
using swiftkv::testing::expect_error;

// The token a fake model "generates" after `tokens`: depends on the whole sequence, so a
// recomputed request must continue exactly where it was.
int32_t next_token(const std::vector<int32_t>& tokens) {
  uint64_t hash = 0;
  for (int32_t token : tokens) hash = hash * 1000003u + static_cast<uint32_t>(token);
  return static_cast<int32_t>(hash % 997);
}

std::vector<int32_t> expected_output(std::vector<int32_t> tokens, int64_t max_tokens) {
  std::vector<int32_t> generated;
  for (int64_t i = 0; i < max_tokens; ++i) {
    generated.push_back(next_token(tokens));
    tokens.push_back(generated.back());
  }
  return generated;
}

// Drives a Scheduler like the engine does. Its "KV pool" stores, at each written slot, a key
// of the whole prefix up to that position: a chunk is computed correctly only when every
// earlier position of its sequence holds its own prefix's key, whoever wrote it (the request
// itself, or another one through the prefix cache).
class FakeEngine {
 public:
  explicit FakeEngine(const SchedulerOptions& options)
      : scheduler(options), pool(static_cast<size_t>(options.num_blocks * options.block_size), 0) {}

  void add(uint64_t id, std::vector<int32_t> prompt, int64_t max_tokens, bool prompt_logits = false) {
    max_tokens_[id] = max_tokens;
    scheduler.add(id, std::move(prompt), max_tokens, prompt_logits);
  }

  SchedulerOutput step() {
    SchedulerOutput output = scheduler.schedule();
    for (const ScheduledChunk& chunk : output.chunks) compute(chunk);
    scheduler.complete(output);
    for (const ScheduledChunk& chunk : output.chunks) {
      const Sequence& sequence = scheduler.sequence(chunk.id);
      if (chunk.end != static_cast<int64_t>(sequence.tokens.size())) {
        EXPECT_NE(chunk.logits, Logits::Last) << "only a sequence's last chunk samples";
        continue;
      }
      EXPECT_NE(chunk.logits, Logits::None) << "the last chunk must give logits";
      scheduler.append_token(chunk.id, next_token(sequence.tokens));
      if (sequence.num_generated() == max_tokens_[chunk.id]) {
        outputs[chunk.id].assign(sequence.tokens.begin() + sequence.num_prompt_tokens, sequence.tokens.end());
        scheduler.finish(chunk.id);
      }
    }
    return output;
  }

  // Steps until every request finished (at most max_steps); returns the steps taken.
  int run(int max_steps = 10000) {
    int steps = 0;
    while (scheduler.num_running() + scheduler.num_waiting() > 0 && steps < max_steps) {
      step();
      ++steps;
    }
    EXPECT_LT(steps, max_steps) << "the scheduler made no progress";
    return steps;
  }

  Scheduler scheduler;
  std::map<uint64_t, std::vector<int32_t>> outputs;

 private:
  static uint64_t prefix_key(const std::vector<int32_t>& tokens, int64_t position) {
    return block_hash(kRootBlockHash, std::span(tokens).first(static_cast<size_t>(position + 1)));
  }
  uint64_t& slot(const Sequence& sequence, int64_t position) {
    const int64_t block_size = scheduler.options().block_size;
    return pool[static_cast<size_t>(sequence.block_table[static_cast<size_t>(position / block_size)] *
                                        block_size +
                                    position % block_size)];
  }
  void compute(const ScheduledChunk& chunk) {
    const Sequence& sequence = scheduler.sequence(chunk.id);
    const int64_t block_size = scheduler.options().block_size;
    ASSERT_EQ(chunk.begin, sequence.num_computed);
    ASSERT_LE(chunk.end, static_cast<int64_t>(sequence.block_table.size()) * block_size);
    for (int64_t p = 0; p < chunk.begin; ++p)
      ASSERT_EQ(slot(sequence, p), prefix_key(sequence.tokens, p))
          << "request " << chunk.id << " position " << p;
    for (int64_t p = chunk.begin; p < chunk.end; ++p) {
      // Writing a block another request holds would corrupt it.
      ASSERT_EQ(scheduler.blocks().ref_count(sequence.block_table[static_cast<size_t>(p / block_size)]), 1);
      slot(sequence, p) = prefix_key(sequence.tokens, p);
    }
  }

  std::vector<uint64_t> pool;
  std::map<uint64_t, int64_t> max_tokens_;
};

std::vector<int32_t> prompt_of(int32_t length, int32_t seed) {
  std::vector<int32_t> prompt;
  for (int32_t t = 0; t < length; ++t) prompt.push_back((seed * 131 + t * 7) % 500);
  return prompt;
}

SchedulerOptions options_with(int64_t num_blocks, int64_t block_size, int64_t max_num_batched_tokens,
                              int64_t max_num_seqs = 64, bool prefix_caching = true) {
  SchedulerOptions options;
  options.num_blocks = num_blocks;
  options.block_size = block_size;
  options.max_num_batched_tokens = max_num_batched_tokens;
  options.max_num_seqs = max_num_seqs;
  options.enable_prefix_caching = prefix_caching;
  return options;
}

struct Chunk {
  uint64_t id;
  int64_t begin, end;
  Logits logits;
  bool operator==(const Chunk&) const = default;
};
std::ostream& operator<<(std::ostream& out, const Chunk& c) {
  return out << "{" << c.id << " [" << c.begin << ", " << c.end << ") " << static_cast<int>(c.logits) << "}";
}
std::vector<Chunk> chunks_of(const SchedulerOutput& output) {
  std::vector<Chunk> chunks;
  for (const ScheduledChunk& c : output.chunks) chunks.push_back({c.id, c.begin, c.end, c.logits});
  return chunks;
}

TEST(Scheduler, DecodesComeFirstThenPromptChunksWithinTheTokenBudget) {
  FakeEngine engine(options_with(64, 4, 8));
  engine.add(1, prompt_of(10, 1), 3);
  engine.add(2, prompt_of(5, 2), 2);
  EXPECT_EQ(chunks_of(engine.step()), (std::vector<Chunk>{{1, 0, 8, Logits::None}}));
  EXPECT_EQ(engine.scheduler.num_waiting(), 1);
  EXPECT_EQ(chunks_of(engine.step()),
            (std::vector<Chunk>{{1, 8, 10, Logits::Last}, {2, 0, 5, Logits::Last}}));
  engine.add(3, prompt_of(20, 3), 1);
  // Both decodes, then the new prompt's first chunk in what is left of the budget.
  EXPECT_EQ(
      chunks_of(engine.step()),
      (std::vector<Chunk>{{1, 10, 11, Logits::Last}, {2, 5, 6, Logits::Last}, {3, 0, 6, Logits::None}}));
  EXPECT_EQ(engine.outputs.at(2), expected_output(prompt_of(5, 2), 2));
  EXPECT_EQ(chunks_of(engine.step()),
            (std::vector<Chunk>{{1, 11, 12, Logits::Last}, {3, 6, 13, Logits::None}}));
  engine.run();
  EXPECT_EQ(engine.outputs.at(1), expected_output(prompt_of(10, 1), 3));
  EXPECT_EQ(engine.outputs.at(3), expected_output(prompt_of(20, 3), 1));
  EXPECT_EQ(engine.scheduler.blocks().num_used_blocks(), 0);
}

TEST(Scheduler, RunsAtMostMaxNumSeqsRequests) {
  FakeEngine engine(options_with(64, 4, 100, /*max_num_seqs=*/2));
  for (uint64_t id = 1; id <= 3; ++id) engine.add(id, prompt_of(3, static_cast<int32_t>(id)), 2);
  EXPECT_EQ(engine.step().chunks.size(), 2u);
  EXPECT_EQ(engine.scheduler.num_running(), 2);
  EXPECT_EQ(engine.scheduler.num_waiting(), 1);
  engine.step();  // both finish
  EXPECT_EQ(chunks_of(engine.step()), (std::vector<Chunk>{{3, 0, 3, Logits::Last}}));
}

TEST(Scheduler, PreemptsTheNewestRequestAndRecomputesItWithWhatItGenerated) {
  // 4 blocks of 4 tokens; each request needs 3 blocks at most (4 prompt + 8 generated - 1).
  FakeEngine engine(options_with(4, 4, 64, 64, /*prefix_caching=*/false));
  engine.add(1, prompt_of(4, 1), 8);
  engine.add(2, prompt_of(4, 2), 8);
  std::vector<uint64_t> preempted;
  std::vector<Chunk> recompute;
  while (engine.scheduler.num_running() + engine.scheduler.num_waiting() > 0) {
    SchedulerOutput output = engine.step();
    preempted.insert(preempted.end(), output.preempted.begin(), output.preempted.end());
    for (const Chunk& chunk : chunks_of(output))
      if (chunk.id == 2 && chunk.begin == 0 && !preempted.empty()) recompute.push_back(chunk);
  }
  EXPECT_EQ(preempted, std::vector<uint64_t>{2});
  EXPECT_EQ(engine.scheduler.preemptions(), 1);
  // Preempted when request 1 needed its third block (position 8): request 2 had generated 5
  // tokens, positions 4..7 computed, and is recomputed as one prefill of all 9.
  ASSERT_EQ(recompute.size(), 1u);
  EXPECT_EQ(recompute[0], (Chunk{2, 0, 9, Logits::Last}));
  EXPECT_EQ(engine.outputs.at(1), expected_output(prompt_of(4, 1), 8));
  EXPECT_EQ(engine.outputs.at(2), expected_output(prompt_of(4, 2), 8));
  EXPECT_EQ(engine.scheduler.blocks().num_free_blocks(), 4);
}

TEST(Scheduler, RefusesARequestThatCouldNeverFitAndBadOptions) {
  Scheduler scheduler(options_with(4, 4, 64));
  EXPECT_EQ(scheduler.check_fits(10, 7), 4);  // 16 positions
  expect_error([&] { scheduler.check_fits(10, 8); }, {"5 KV blocks", "holds 4 blocks", "--kv-cache-memory"});
  expect_error([&] { scheduler.add(1, prompt_of(20, 1), 1); }, {"KV blocks"});
  expect_error([&] { scheduler.add(1, {}, 1); }, {"prompt is empty"});
  scheduler.add(1, prompt_of(2, 1), 1);
  expect_error([&] { scheduler.add(1, prompt_of(2, 1), 1); }, {"already"});
  expect_error([] { Scheduler(options_with(4, 4, 0)); }, {"max_num_batched_tokens"});
  expect_error([] { Scheduler(options_with(4, 4, 8, 0)); }, {"max_num_seqs"});
}

TEST(Scheduler, PrefixCacheHitsSkipComputedBlocksButNeverTheLastPromptToken) {
  FakeEngine engine(options_with(32, 4, 64));
  const std::vector<int32_t> shared = prompt_of(12, 9);
  engine.add(1, shared, 1);
  engine.run();  // finished: its 3 full blocks stay cached
  EXPECT_EQ(engine.scheduler.blocks().num_used_blocks(), 0);

  std::vector<int32_t> longer(shared.begin(), shared.begin() + 8);
  for (int32_t t : {1, 2, 3, 4, 5}) longer.push_back(t);
  engine.add(2, shared, 2);  // the same prompt: the block with its last token is recomputed
  engine.add(3, longer, 2);
  EXPECT_EQ(chunks_of(engine.step()),
            (std::vector<Chunk>{{2, 8, 12, Logits::Last}, {3, 8, 13, Logits::Last}}));
  EXPECT_EQ(engine.scheduler.sequence(2).cached_tokens, 8);
  EXPECT_EQ(engine.scheduler.prefix_cache_queries(), 12 + 12 + 13);
  EXPECT_EQ(engine.scheduler.prefix_cache_hits(), 8 + 8);
  engine.run();
  EXPECT_EQ(engine.outputs.at(2), expected_output(shared, 2));
  EXPECT_EQ(engine.outputs.at(3), expected_output(longer, 2));
}

TEST(Scheduler, PromptLogitsAskEveryRowInCappedChunksAndSkipThePrefixCache) {
  SchedulerOptions options = options_with(32, 4, 64);
  options.max_all_logits_tokens = 5;
  FakeEngine engine(options);
  const std::vector<int32_t> prompt = prompt_of(12, 4);
  engine.add(1, prompt, 1);
  engine.run();
  engine.add(2, prompt, 2, /*prompt_logits=*/true);
  EXPECT_EQ(chunks_of(engine.step()), (std::vector<Chunk>{{2, 0, 5, Logits::All}}));
  EXPECT_EQ(chunks_of(engine.step()), (std::vector<Chunk>{{2, 5, 10, Logits::All}}));
  EXPECT_EQ(chunks_of(engine.step()), (std::vector<Chunk>{{2, 10, 12, Logits::All}}));
  // Once it has generated, a decode wants the last row only.
  EXPECT_EQ(chunks_of(engine.step()), (std::vector<Chunk>{{2, 12, 13, Logits::Last}}));
  EXPECT_EQ(engine.outputs.at(2), expected_output(prompt, 2));
}

TEST(Scheduler, ManyRequestsSharingPrefixesFinishCorrectlyUnderPreemption) {
  // 24 requests whose prompts share one of three prefixes, a pool that holds about three of
  // them at once, and small chunks: every mechanism at once, checked by the fake KV.
  FakeEngine engine(options_with(24, 4, 16, 8));
  std::map<uint64_t, std::vector<int32_t>> prompts;
  for (uint64_t id = 1; id <= 24; ++id) {
    std::vector<int32_t> prompt =
        prompt_of(static_cast<int32_t>(8 + 4 * (id % 3)), static_cast<int32_t>(id % 3));
    for (uint64_t t = 0; t < id % 7; ++t) prompt.push_back(static_cast<int32_t>(600 + id + t));
    prompts[id] = prompt;
    engine.add(id, prompt, 6 + static_cast<int64_t>(id % 5));
    if (id % 4 == 0) engine.step();  // arrivals spread over time
  }
  engine.run();
  for (const auto& [id, prompt] : prompts)
    EXPECT_EQ(engine.outputs.at(id), expected_output(prompt, 6 + static_cast<int64_t>(id % 5))) << id;
  EXPECT_GT(engine.scheduler.preemptions(), 0);
  EXPECT_GT(engine.scheduler.prefix_cache_hits(), 0);
  EXPECT_EQ(engine.scheduler.blocks().num_used_blocks(), 0);
}

}  // namespace
}  // namespace swiftkv::runtime
