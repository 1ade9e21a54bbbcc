#include "runtime/block_manager.h"

#include <algorithm>
#include <string>

#include "common/error.h"

namespace swiftkv::runtime {

namespace {
// splitmix64's finaliser: every input bit affects every output bit.
uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
}  // namespace

uint64_t block_hash(uint64_t parent_hash, std::span<const int32_t> tokens) {
  uint64_t hash = mix(parent_hash ^ 0x2545f4914f6cdd1dull);
  for (int32_t token : tokens) hash = mix(hash ^ static_cast<uint32_t>(token));
  return mix(hash ^ tokens.size());
}

BlockManager::BlockManager(int64_t num_blocks, int64_t block_size, bool enable_prefix_caching)
    : block_size_(block_size), prefix_caching_(enable_prefix_caching) {
  if (num_blocks < 1) throw Error("the KV pool needs at least one block, got " + std::to_string(num_blocks));
  if (block_size < 1) throw Error("the KV block size must be >= 1, got " + std::to_string(block_size));
  blocks_.resize(static_cast<size_t>(num_blocks));
  // Popped from the back: blocks are handed out in increasing order.
  for (int64_t b = num_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

BlockManager::Block& BlockManager::block_at(int32_t block) {
  if (block < 0 || block >= num_blocks())
    throw Error("KV block " + std::to_string(block) + " is outside the pool [0, " +
                std::to_string(num_blocks()) + ")");
  return blocks_[static_cast<size_t>(block)];
}

PrefixMatch BlockManager::match_prefix(std::span<const int32_t> tokens, int64_t max_blocks) const {
  PrefixMatch match;
  if (!prefix_caching_) return match;
  const int64_t full_blocks =
      std::min<int64_t>(max_blocks, static_cast<int64_t>(tokens.size()) / block_size_);
  uint64_t parent = kRootBlockHash;
  for (int64_t b = 0; b < full_blocks; ++b) {
    auto block_tokens =
        tokens.subspan(static_cast<size_t>(b * block_size_), static_cast<size_t>(block_size_));
    const uint64_t hash = block_hash(parent, block_tokens);
    auto found = cache_.find(hash);
    if (found == cache_.end()) break;
    const Block& block = blocks_[static_cast<size_t>(found->second)];
    if (block.parent_hash != parent ||
        !std::equal(block_tokens.begin(), block_tokens.end(), block.tokens.begin()))
      break;
    match.blocks.push_back(found->second);
    match.hashes.push_back(hash);
    parent = hash;
  }
  return match;
}

int64_t BlockManager::count_unreferenced(std::span<const int32_t> blocks) const {
  return std::count_if(blocks.begin(), blocks.end(),
                       [&](int32_t block) { return blocks_.at(static_cast<size_t>(block)).ref_count == 0; });
}

void BlockManager::acquire(int32_t block) {
  Block& entry = block_at(block);
  if (!entry.cached) throw Error("KV block " + std::to_string(block) + " is not in the prefix cache");
  if (entry.ref_count++ == 0) evictable_.erase(entry.evictable);
}

int32_t BlockManager::allocate() {
  int32_t block;
  if (!free_.empty()) {
    block = free_.back();
    free_.pop_back();
  } else if (!evictable_.empty()) {
    block = evictable_.front();
    evictable_.pop_front();
    Block& evicted = blocks_[static_cast<size_t>(block)];
    cache_.erase(evicted.hash);
    evicted.cached = false;
    evicted.tokens.clear();
  } else {
    throw Error("out of KV blocks: all " + std::to_string(num_blocks()) + " are held by requests");
  }
  blocks_[static_cast<size_t>(block)].ref_count = 1;
  return block;
}

void BlockManager::release(int32_t block) {
  Block& entry = block_at(block);
  if (entry.ref_count <= 0)
    throw Error("KV block " + std::to_string(block) + " released more often than held");
  if (--entry.ref_count > 0) return;
  if (entry.cached)
    entry.evictable = evictable_.insert(evictable_.end(), block);
  else
    free_.push_back(block);
}

uint64_t BlockManager::commit(int32_t block, uint64_t parent_hash, std::span<const int32_t> tokens) {
  if (static_cast<int64_t>(tokens.size()) != block_size_)
    throw Error("only full blocks enter the prefix cache: got " + std::to_string(tokens.size()) +
                " tokens, a block holds " + std::to_string(block_size_));
  const uint64_t hash = block_hash(parent_hash, tokens);
  Block& entry = block_at(block);
  if (!prefix_caching_ || entry.cached || cache_.contains(hash)) return hash;
  entry.cached = true;
  entry.hash = hash;
  entry.parent_hash = parent_hash;
  entry.tokens.assign(tokens.begin(), tokens.end());
  cache_.emplace(hash, block);
  return hash;
}

}  // namespace swiftkv::runtime
