#pragma once
// The blocks of the paged KV pool: a free list, reference counts, and a prefix cache.
//
// Prefix cache: a FULL block is known by the chain hash of (its parent block's hash, its
// tokens), so one hash names the whole token prefix up to the block's end, and KV computed
// for a prefix (every cache, since every cache's K/V depends only on the tokens before it)
// can be reused by any request that starts with the same tokens. A block whose last request
// finished stays cached ("evictable") until a fresh block is needed and the free list is
// empty; then the least recently released one is evicted. A match also compares the stored
// tokens and parent hash, so a wrong hit needs a 64-bit collision of the parent chain.
#include <cstdint>
#include <list>
#include <span>
#include <unordered_map>
#include <vector>

namespace swiftkv::runtime {

// The hash of a full block holding `tokens` after the prefix whose last block hashed to
// `parent_hash` (kRootBlockHash for the first block).
inline constexpr uint64_t kRootBlockHash = 0x9e3779b97f4a7c15ull;
uint64_t block_hash(uint64_t parent_hash, std::span<const int32_t> tokens);

struct PrefixMatch {
  std::vector<int32_t> blocks;   // cached blocks holding the prefix, in order
  std::vector<uint64_t> hashes;  // their chain hashes
};

class BlockManager {
 public:
  // Throws swiftkv::Error unless num_blocks >= 1 and block_size >= 1.
  BlockManager(int64_t num_blocks, int64_t block_size, bool enable_prefix_caching);

  int64_t num_blocks() const { return static_cast<int64_t>(blocks_.size()); }
  int64_t block_size() const { return block_size_; }
  bool prefix_caching() const { return prefix_caching_; }
  // Blocks a request can get now: free ones plus cached ones that no request holds.
  int64_t num_free_blocks() const { return static_cast<int64_t>(free_.size() + evictable_.size()); }
  // Blocks held by at least one request.
  int64_t num_used_blocks() const { return num_blocks() - num_free_blocks(); }
  int32_t ref_count(int32_t block) const { return blocks_.at(static_cast<size_t>(block)).ref_count; }
  bool is_cached(int32_t block) const { return blocks_.at(static_cast<size_t>(block)).cached; }

  // The cached blocks holding the longest run of full leading blocks of `tokens`, at most
  // max_blocks of them. Takes no reference (see acquire). Empty when prefix caching is off.
  PrefixMatch match_prefix(std::span<const int32_t> tokens, int64_t max_blocks) const;
  // How many of `blocks` no request holds: acquiring them lowers num_free_blocks() by that much.
  int64_t count_unreferenced(std::span<const int32_t> blocks) const;
  // Adds a reference to a cached block (a prefix match), taking it off the eviction list.
  void acquire(int32_t block);
  // A block with one reference: from the free list, else the least recently released cached
  // block is evicted. Throws swiftkv::Error when every block is held.
  int32_t allocate();
  // Drops one reference. A block nobody holds goes back to the free list or, when cached,
  // becomes the most recently used evictable block.
  void release(int32_t block);
  // `block` now holds `tokens` (one full block) after the prefix hashed `parent_hash`: it
  // enters the prefix cache unless an equal block is cached already. Returns its chain hash.
  uint64_t commit(int32_t block, uint64_t parent_hash, std::span<const int32_t> tokens);

 private:
  struct Block {
    int32_t ref_count = 0;
    bool cached = false;
    uint64_t hash = 0, parent_hash = 0;
    std::vector<int32_t> tokens;             // when cached: its tokens, to confirm a hash match
    std::list<int32_t>::iterator evictable;  // when cached and unreferenced
  };
  Block& block_at(int32_t block);

  int64_t block_size_;
  bool prefix_caching_;
  std::vector<Block> blocks_;
  std::vector<int32_t> free_;                    // held by nobody and not cached
  std::list<int32_t> evictable_;                 // cached and held by nobody, least recently released first
  std::unordered_map<uint64_t, int32_t> cache_;  // chain hash -> cached block
};

}  // namespace swiftkv::runtime
