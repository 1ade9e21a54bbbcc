#pragma once
// Added tokens (tokenizer.json "added_tokens"): special tokens like <|eot_id|> and extra
// words, found in the text before the model sees it, the way Hugging Face does:
// leftmost-longest matching over the whole added vocabulary.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace swiftkv::tokenizer {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool single_word = false;  // only matches as a whole word
  bool lstrip = false;       // swallows whitespace on its left
  bool rstrip = false;       // swallows whitespace on its right
  bool normalized = false;   // matched in normalised text rather than raw text
  bool special = false;      // dropped by decode(skip_special_tokens)
};

// A piece of the input: plain text [begin, end) when token_id < 0, else an added token.
struct Segment {
  size_t begin = 0, end = 0;
  int32_t token_id = -1;
};

class AddedVocabulary {
 public:
  explicit AddedVocabulary(const nlohmann::json& added_tokens);

  // Splits text at the added tokens whose `normalized` flag equals `normalized`.
  std::vector<Segment> split(std::string_view text, bool normalized) const;
  bool has_normalized_tokens() const { return !normalized_.empty(); }

  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  struct Matcher {
    // Candidates by first byte, longest first, so the first hit is the longest one.
    std::unordered_map<unsigned char, std::vector<const AddedToken*>> by_first_byte;
    bool empty() const { return by_first_byte.empty(); }
  };
  std::vector<Segment> split_with(std::string_view text, const Matcher& matcher) const;

  std::vector<AddedToken> tokens_;
  Matcher raw_, normalized_;
};

}  // namespace swiftkv::tokenizer
