// The KV block allocator: free list, reference counts, and the prefix cache of full blocks.
#include "runtime/block_manager.h"

#include <gtest/gtest.h>

#include <numeric>
#include <set>

#include "expect_error.h"

namespace swiftkv::runtime {
namespace {

using swiftkv::testing::expect_error;

std::vector<int32_t> iota_tokens(int32_t count, int32_t first) {
  std::vector<int32_t> tokens(static_cast<size_t>(count));
  std::iota(tokens.begin(), tokens.end(), first);
  return tokens;
}

// Allocates one block per full block of `tokens` and commits them as a chain, like a request
// whose prefill completed.
std::vector<int32_t> fill(BlockManager& blocks, const std::vector<int32_t>& tokens) {
  std::vector<int32_t> table;
  uint64_t parent = kRootBlockHash;
  const size_t size = static_cast<size_t>(blocks.block_size());
  for (size_t begin = 0; begin + size <= tokens.size(); begin += size) {
    table.push_back(blocks.allocate());
    parent = blocks.commit(table.back(), parent, std::span<const int32_t>(tokens).subspan(begin, size));
  }
  return table;
}

void release_all(BlockManager& blocks, const std::vector<int32_t>& table) {
  for (auto block = table.rbegin(); block != table.rend(); ++block) blocks.release(*block);
}

TEST(BlockManager, AllocatesEveryBlockOnceAndRefusesWhenAllAreHeld) {
  BlockManager blocks(4, 16, /*enable_prefix_caching=*/false);
  std::set<int32_t> seen;
  for (int i = 0; i < 4; ++i) seen.insert(blocks.allocate());
  EXPECT_EQ(seen, (std::set<int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(blocks.num_free_blocks(), 0);
  EXPECT_EQ(blocks.num_used_blocks(), 4);
  expect_error([&] { blocks.allocate(); }, {"out of KV blocks", "4"});
  blocks.release(2);
  EXPECT_EQ(blocks.num_free_blocks(), 1);
  EXPECT_EQ(blocks.allocate(), 2);
  expect_error([] { BlockManager(0, 16, true); }, {"at least one block"});
  expect_error([] { BlockManager(4, 0, true); }, {"block size"});
}

TEST(BlockManager, ReleasingMoreOftenThanHeldIsAnError) {
  BlockManager blocks(2, 4, true);
  const int32_t block = blocks.allocate();
  blocks.release(block);
  expect_error([&] { blocks.release(block); }, {"released more often than held"});
  expect_error([&] { blocks.release(7); }, {"outside the pool"});
}

TEST(BlockManager, ChainHashDependsOnTheWholePrefix) {
  const std::vector<int32_t> a{1, 2, 3, 4}, b{1, 2, 3, 5};
  EXPECT_EQ(block_hash(kRootBlockHash, a), block_hash(kRootBlockHash, a));
  EXPECT_NE(block_hash(kRootBlockHash, a), block_hash(kRootBlockHash, b));
  EXPECT_NE(block_hash(kRootBlockHash, a), block_hash(block_hash(kRootBlockHash, b), a));
}

TEST(BlockManager, MatchesTheLongestCachedRunOfFullBlocks) {
  BlockManager blocks(8, 4, true);
  const std::vector<int32_t> tokens = iota_tokens(14, 100);  // 3 full blocks and 2 tokens
  const std::vector<int32_t> table = fill(blocks, tokens);
  ASSERT_EQ(table.size(), 3u);

  PrefixMatch all = blocks.match_prefix(tokens, 10);
  EXPECT_EQ(all.blocks, table);
  ASSERT_EQ(all.hashes.size(), 3u);
  EXPECT_EQ(all.hashes[1], block_hash(block_hash(kRootBlockHash, std::span(tokens).first(4)),
                                      std::span(tokens).subspan(4, 4)));
  EXPECT_EQ(blocks.match_prefix(tokens, 2).blocks, std::vector<int32_t>(table.begin(), table.begin() + 2));

  // A different token in the second block: only the first block matches, and a different
  // first block matches nothing even when later blocks are equal.
  std::vector<int32_t> other = tokens;
  other[6] = 7;
  EXPECT_EQ(blocks.match_prefix(other, 10).blocks, std::vector<int32_t>{table[0]});
  other = tokens;
  other[0] = 7;
  EXPECT_TRUE(blocks.match_prefix(other, 10).blocks.empty());
  // A prompt shorter than a block matches nothing.
  EXPECT_TRUE(blocks.match_prefix(std::span(tokens).first(3), 10).blocks.empty());
}

TEST(BlockManager, ReleasedCachedBlocksStayReusableUntilEvictedLeastRecentlyUsedFirst) {
  BlockManager blocks(4, 2, true);
  const std::vector<int32_t> first = iota_tokens(4, 0), second = iota_tokens(4, 50);
  const std::vector<int32_t> first_table = fill(blocks, first);
  release_all(blocks, first_table);  // its tail block is released first: evicted first
  EXPECT_EQ(blocks.num_free_blocks(), 4);
  EXPECT_EQ(blocks.num_used_blocks(), 0);
  EXPECT_TRUE(blocks.is_cached(first_table[0]));

  // Acquiring a match takes the blocks off the eviction list.
  PrefixMatch match = blocks.match_prefix(first, 2);
  ASSERT_EQ(match.blocks, first_table);
  EXPECT_EQ(blocks.count_unreferenced(match.blocks), 2);
  for (int32_t block : match.blocks) blocks.acquire(block);
  EXPECT_EQ(blocks.num_free_blocks(), 2);
  EXPECT_EQ(blocks.ref_count(first_table[0]), 1);
  EXPECT_EQ(blocks.count_unreferenced(match.blocks), 0);
  release_all(blocks, first_table);

  // Never-used blocks go before cached ones; then the least recently released cached block.
  const std::vector<int32_t> second_table = fill(blocks, second);
  for (int32_t block : second_table) EXPECT_TRUE(blocks.ref_count(block) == 1 && blocks.is_cached(block));
  EXPECT_EQ(blocks.match_prefix(first, 2).blocks, first_table);
  const int32_t evicted = blocks.allocate();
  EXPECT_EQ(evicted, first_table[1]);  // the tail, released before the head
  EXPECT_FALSE(blocks.is_cached(evicted));
  EXPECT_EQ(blocks.match_prefix(first, 2).blocks, std::vector<int32_t>{first_table[0]});
  EXPECT_EQ(blocks.allocate(), first_table[0]);
  EXPECT_TRUE(blocks.match_prefix(first, 2).blocks.empty());
  expect_error([&] { blocks.allocate(); }, {"out of KV blocks"});
}

TEST(BlockManager, AnEqualBlockComputedTwiceIsCachedOnce) {
  BlockManager blocks(4, 2, true);
  const std::vector<int32_t> tokens{5, 6};
  const int32_t a = blocks.allocate(), b = blocks.allocate();
  const uint64_t hash = blocks.commit(a, kRootBlockHash, tokens);
  EXPECT_EQ(blocks.commit(b, kRootBlockHash, tokens), hash);
  EXPECT_TRUE(blocks.is_cached(a));
  EXPECT_FALSE(blocks.is_cached(b));
  blocks.release(b);  // not cached: straight back to the free list
  EXPECT_EQ(blocks.allocate(), b);
  expect_error([&] { blocks.commit(b, hash, std::vector<int32_t>{1}); }, {"only full blocks"});
}

TEST(BlockManager, WithPrefixCachingOffNothingIsCachedOrMatched) {
  BlockManager blocks(4, 2, false);
  const std::vector<int32_t> tokens = iota_tokens(4, 0);
  const std::vector<int32_t> table = fill(blocks, tokens);
  EXPECT_FALSE(blocks.is_cached(table[0]));
  EXPECT_TRUE(blocks.match_prefix(tokens, 2).blocks.empty());
  release_all(blocks, table);
  EXPECT_EQ(blocks.num_free_blocks(), 4);
  expect_error([&] { blocks.acquire(table[0]); }, {"not in the prefix cache"});
}

}  // namespace
}  // namespace swiftkv::runtime
