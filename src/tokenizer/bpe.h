#pragma once
// tokenizer.json "model" of type BPE: ranked merges over a word's characters, with
// SentencePiece-style byte fallback and unknown-token handling, and Llama-3's
// ignore_merges (a word that is itself in the vocabulary is emitted whole).
#include <array>
#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace swiftkv::tokenizer {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
};
using TokenIds = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

class BpeModel {
 public:
  explicit BpeModel(const nlohmann::json& model);
  BpeModel(const BpeModel&) = delete;

  // Appends the ids of one pre-tokenized word.
  void encode_word(std::string_view word, std::vector<int32_t>& ids) const;

  const TokenIds& vocab() const { return vocab_; }
  const std::vector<std::string>& id_to_token() const { return id_to_token_; }

 private:
  struct Merge {
    int32_t rank;
    int32_t merged_id;
  };
  static uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  void merge_word(std::string_view word, std::vector<int32_t>& ids) const;

  TokenIds vocab_;
  std::vector<std::string> id_to_token_;  // "" for ids the vocabulary skips
  std::unordered_map<uint64_t, Merge> merges_;
  std::optional<int32_t> unk_id_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  std::string continuing_subword_prefix_;
  std::string end_of_word_suffix_;
  std::array<int32_t, 256> byte_token_ids_{};  // <0xXX> ids, -1 when absent

  // word -> ids, bounded (cleared when full) so a server's memory does not grow with
  // the variety of its input. Encoding is const and may run on several threads.
  static constexpr size_t kCacheCapacity = 16384;
  static constexpr size_t kMaxCachedWordBytes = 256;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache_;
};

// Token ids in tokenizer.json (vocabulary and added tokens) must lie in [0, kMaxTokenId): the
// id -> token table is sized by the largest id, so a corrupt id must not allocate gigabytes.
constexpr int64_t kMaxTokenId = int64_t{1} << 24;
// Throws swiftkv::Error naming the token when `id` is outside [0, kMaxTokenId).
int32_t checked_token_id(const nlohmann::json& id, const std::string& token);

}  // namespace swiftkv::tokenizer
