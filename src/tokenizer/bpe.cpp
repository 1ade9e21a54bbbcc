#include "tokenizer/bpe.h"

#include <cstdio>
#include <queue>

#include "common/error.h"
#include "tokenizer/utf8.h"

namespace swiftkv::tokenizer {
namespace {

std::string optional_string(const nlohmann::json& model, const char* key) {
  auto it = model.find(key);
  return it == model.end() || it->is_null() ? std::string() : it->get<std::string>();
}

}  // namespace

BpeModel::BpeModel(const nlohmann::json& model) {
  const std::string type = model.value("type", "BPE");
  if (type != "BPE")
    throw Error("tokenizer.json: model type \"" + type + "\" is not supported (only BPE is)");
  if (model.contains("dropout") && !model["dropout"].is_null() && model["dropout"].get<double>() != 0.0)
    throw Error("tokenizer.json: BPE dropout is not supported for inference");

  const nlohmann::json& vocab = model.at("vocab");
  vocab_.reserve(vocab.size());
  for (const auto& [token, id_json] : vocab.items()) {
    const int32_t id = checked_token_id(id_json, token);
    vocab_.emplace(token, id);
    if (static_cast<size_t>(id) >= id_to_token_.size()) id_to_token_.resize(id + 1);
    id_to_token_[id] = token;
  }

  continuing_subword_prefix_ = optional_string(model, "continuing_subword_prefix");
  end_of_word_suffix_ = optional_string(model, "end_of_word_suffix");
  const nlohmann::json& merges = model.at("merges");
  merges_.reserve(merges.size());
  std::string merged;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const nlohmann::json& merge = merges[rank];
    std::string_view left, right;  // views into the JSON: no copies for 100k+ merges
    if (merge.is_string()) {
      // "left right": pieces never hold a plain space in this form.
      std::string_view text = merge.get_ref<const std::string&>();
      size_t space = text.find(' ');
      if (space == std::string_view::npos || text.find(' ', space + 1) != std::string_view::npos)
        throw Error("tokenizer.json: merge " + std::to_string(rank) + " \"" + std::string(text) +
                    "\" is not \"left right\"");
      left = text.substr(0, space);
      right = text.substr(space + 1);
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
      left = merge[0].get_ref<const std::string&>();
      right = merge[1].get_ref<const std::string&>();
    } else {
      throw Error("tokenizer.json: merge " + std::to_string(rank) + " " + merge.dump() + " is not a pair");
    }
    // With a continuing-subword prefix ("##"), the right piece carries it and the merged
    // token does not repeat it.
    merged.assign(left);
    if (!continuing_subword_prefix_.empty() && right.starts_with(continuing_subword_prefix_))
      merged.append(right.substr(continuing_subword_prefix_.size()));
    else
      merged.append(right);
    auto left_id = vocab_.find(left), right_id = vocab_.find(right), merged_id = vocab_.find(merged);
    if (left_id == vocab_.end() || right_id == vocab_.end() || merged_id == vocab_.end())
      throw Error("tokenizer.json: merge " + std::to_string(rank) + " (\"" + std::string(left) + "\", \"" +
                  std::string(right) + "\") uses a token that is not in the vocabulary");
    // A pair listed twice keeps its first (best) rank, as Hugging Face does.
    merges_.emplace(pair_key(left_id->second, right_id->second),
                    Merge{static_cast<int32_t>(rank), merged_id->second});
  }

  std::string unk = optional_string(model, "unk_token");
  if (!unk.empty()) {
    auto it = vocab_.find(unk);
    if (it == vocab_.end()) throw Error("tokenizer.json: unk_token \"" + unk + "\" is not in the vocabulary");
    unk_id_ = it->second;
  }
  fuse_unk_ = model.value("fuse_unk", false);
  byte_fallback_ = model.value("byte_fallback", false);
  ignore_merges_ = model.value("ignore_merges", false);
  for (int byte = 0; byte < 256; ++byte) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", byte);
    auto it = vocab_.find(std::string_view(name));
    byte_token_ids_[byte] = it == vocab_.end() ? -1 : it->second;
  }
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& ids) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (auto it = vocab_.find(word); it != vocab_.end()) {
      ids.push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    std::lock_guard lock(cache_mutex_);
    if (auto it = cache_.find(word); it != cache_.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  size_t first = ids.size();
  merge_word(word, ids);
  if (cacheable) {
    std::lock_guard lock(cache_mutex_);
    if (cache_.size() >= kCacheCapacity) cache_.clear();
    cache_.emplace(std::string(word), std::vector<int32_t>(ids.begin() + first, ids.end()));
  }
}

void BpeModel::merge_word(std::string_view word, std::vector<int32_t>& ids) const {
  // Symbols form a doubly linked list over an array; a merge folds `next` into `pos`.
  struct Symbol {
    int32_t id;
    int32_t prev, next;
    bool alive;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  auto push = [&](int32_t id) {
    int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, index - 1, index + 1, true});
  };
  std::string piece;
  bool previous_was_unk = false;
  for (size_t pos = 0; pos < word.size();) {
    size_t length = utf8_sequence_length(word[pos]);
    length = std::min(length, word.size() - pos);
    std::string_view character = word.substr(pos, length);
    bool is_first = pos == 0;
    pos += length;
    bool is_last = pos == word.size();
    piece.clear();
    if (!is_first) piece += continuing_subword_prefix_;
    piece += character;
    if (is_last) piece += end_of_word_suffix_;
    if (auto it = vocab_.find(piece); it != vocab_.end()) {
      push(it->second);
      previous_was_unk = false;
      continue;
    }
    if (byte_fallback_) {
      bool all_bytes = true;
      for (char c : character) all_bytes = all_bytes && byte_token_ids_[static_cast<unsigned char>(c)] >= 0;
      if (all_bytes) {
        for (char c : character) push(byte_token_ids_[static_cast<unsigned char>(c)]);
        previous_was_unk = false;
        continue;
      }
    }
    // No unk token: Hugging Face drops the character.
    if (unk_id_) {
      if (!(fuse_unk_ && previous_was_unk)) push(*unk_id_);
      previous_was_unk = true;
    }
  }
  if (symbols.empty()) return;
  symbols.back().next = -1;

  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t left_id, right_id;  // the pair when queued: a merge elsewhere may have changed it
    int32_t merged_id;
    // Lowest rank first, leftmost on ties (std::priority_queue pops the "largest").
    bool operator<(const Candidate& other) const {
      return rank != other.rank ? rank > other.rank : pos > other.pos;
    }
  };
  auto candidate_at = [&](int32_t pos) -> std::optional<Candidate> {
    int32_t next = symbols[pos].next;
    if (next < 0) return std::nullopt;
    auto it = merges_.find(pair_key(symbols[pos].id, symbols[next].id));
    if (it == merges_.end()) return std::nullopt;
    return Candidate{it->second.rank, pos, symbols[pos].id, symbols[next].id, it->second.merged_id};
  };
  std::vector<Candidate> initial;
  initial.reserve(symbols.size());
  for (int32_t pos = 0; pos + 1 < static_cast<int32_t>(symbols.size()); ++pos)
    if (auto candidate = candidate_at(pos)) initial.push_back(*candidate);
  std::priority_queue<Candidate> queue(std::less<Candidate>(), std::move(initial));  // heapify: O(n)

  while (!queue.empty()) {
    Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    // Stale entry: this symbol was merged away or its pair changed since it was queued.
    if (!left.alive || left.next < 0 || left.id != top.left_id || symbols[left.next].id != top.right_id)
      continue;
    Symbol& right = symbols[left.next];
    right.alive = false;
    left.id = top.merged_id;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (left.prev >= 0)
      if (auto candidate = candidate_at(left.prev)) queue.push(*candidate);
    if (auto candidate = candidate_at(top.pos)) queue.push(*candidate);
  }
  for (int32_t pos = 0; pos >= 0; pos = symbols[pos].next) ids.push_back(symbols[pos].id);
}

int32_t checked_token_id(const nlohmann::json& id, const std::string& token) {
  const int64_t value = id.is_number_integer() ? id.get<int64_t>() : -1;
  if (value < 0 || value >= kMaxTokenId)
    throw Error("tokenizer.json: token \"" + token + "\" has id " + id.dump() +
                ", expected an integer in [0, " + std::to_string(kMaxTokenId) + ")");
  return static_cast<int32_t>(value);
}

}  // namespace swiftkv::tokenizer
