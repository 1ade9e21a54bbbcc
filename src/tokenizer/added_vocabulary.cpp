#include "tokenizer/added_vocabulary.h"

#include <algorithm>

#include "common/error.h"
#include "tokenizer/bpe.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace swiftkv::tokenizer {
namespace {

bool is_whitespace(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

// Word characters for single_word: ASCII letters, digits and '_', and (an approximation of
// Unicode alphanumerics) any non-ASCII character that is not whitespace.
bool is_word_char(uint32_t c) {
  if (c < 0x80) return std::isalnum(static_cast<int>(c)) || c == '_';
  return !is_whitespace(c);
}

// The code point that ends just before `pos` (text valid UTF-8, pos > 0).
uint32_t codepoint_before(std::string_view text, size_t pos) {
  size_t start = pos - 1;
  while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
  return next_codepoint(text, start);
}

}  // namespace

AddedVocabulary::AddedVocabulary(const nlohmann::json& added_tokens) {
  if (added_tokens.is_null()) return;
  for (const auto& entry : added_tokens) {
    AddedToken token;
    token.content = entry.at("content").get<std::string>();
    token.id = checked_token_id(entry.at("id"), token.content);
    token.single_word = entry.value("single_word", false);
    token.lstrip = entry.value("lstrip", false);
    token.rstrip = entry.value("rstrip", false);
    token.special = entry.value("special", false);
    // Hugging Face's default: special tokens are matched in raw text, others normalised.
    token.normalized = entry.value("normalized", !token.special);
    if (token.content.empty())
      throw Error("tokenizer.json: added token " + std::to_string(token.id) + " is empty");
    if (find_invalid_utf8(token.content) != std::string_view::npos)
      throw Error("tokenizer.json: added token " + std::to_string(token.id) + " is not valid UTF-8");
    tokens_.push_back(std::move(token));
  }
  for (const AddedToken& token : tokens_)
    (token.normalized ? normalized_ : raw_)
        .by_first_byte[static_cast<unsigned char>(token.content[0])]
        .push_back(&token);
  for (Matcher* matcher : {&raw_, &normalized_})
    for (auto& [byte, candidates] : matcher->by_first_byte)
      std::stable_sort(candidates.begin(), candidates.end(), [](const AddedToken* a, const AddedToken* b) {
        return a->content.size() > b->content.size();
      });
}

std::vector<Segment> AddedVocabulary::split(std::string_view text, bool normalized) const {
  return split_with(text, normalized ? normalized_ : raw_);
}

std::vector<Segment> AddedVocabulary::split_with(std::string_view text, const Matcher& matcher) const {
  std::vector<Segment> segments;
  size_t text_start = 0;  // start of the plain text not yet emitted
  size_t pos = 0;
  while (pos < text.size()) {
    auto bucket = matcher.empty() ? matcher.by_first_byte.end()
                                  : matcher.by_first_byte.find(static_cast<unsigned char>(text[pos]));
    const AddedToken* match = nullptr;
    if (bucket != matcher.by_first_byte.end()) {
      for (const AddedToken* token : bucket->second) {
        if (text.compare(pos, token->content.size(), token->content) == 0) {
          match = token;
          break;
        }
      }
    }
    if (!match) {
      ++pos;
      continue;
    }
    size_t begin = pos, end = pos + match->content.size();
    if (match->single_word) {
      bool word_before = begin > 0 && is_word_char(codepoint_before(text, begin));
      size_t after = end;
      bool word_after = end < text.size() && is_word_char(next_codepoint(text, after));
      if (word_before || word_after) {
        // The leftmost-longest match stands but is not a token (as in Hugging Face).
        pos = end;
        continue;
      }
    }
    if (match->lstrip) {
      while (begin > text_start) {
        size_t start = begin - 1;
        while (start > text_start && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
        size_t cursor = start;
        if (!is_whitespace(next_codepoint(text, cursor))) break;
        begin = start;
      }
    }
    if (match->rstrip)
      while (end < text.size()) {
        size_t next = end;
        if (!is_whitespace(next_codepoint(text, next))) break;
        end = next;
      }
    if (begin > text_start) segments.push_back({text_start, begin, -1});
    segments.push_back({begin, end, match->id});
    text_start = pos = end;
  }
  if (text_start < text.size()) segments.push_back({text_start, text.size(), -1});
  return segments;
}

}  // namespace swiftkv::tokenizer
