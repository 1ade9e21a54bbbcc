#pragma once
// UTF-8 primitives for the tokenizer layer (validation follows the Unicode standard: no
// overlongs, no surrogates, nothing above U+10FFFF; replacement uses "maximal subparts",
// like Rust's String::from_utf8_lossy that Hugging Face's decoders use).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace swiftkv::tokenizer {

// Length of the sequence a lead byte announces (1 for ASCII and for bytes that cannot lead,
// so callers always make progress).
inline size_t utf8_sequence_length(char lead) {
  auto byte = static_cast<unsigned char>(lead);
  if (byte < 0xC0) return 1;
  if (byte < 0xE0) return 2;
  if (byte < 0xF0) return 3;
  if (byte < 0xF8) return 4;
  return 1;
}

// Length of the valid (possibly incomplete) UTF-8 prefix of a character starting at text[0]:
// returns the full length when text starts with a complete valid character, 0 when text[0]
// cannot start one, and otherwise how many bytes form a valid but unfinished prefix
// (setting *complete to false).
size_t utf8_valid_prefix(std::string_view text, bool* complete);

// Decodes the character at text[pos] (text must be valid there) and advances pos.
uint32_t next_codepoint(std::string_view text, size_t& pos);
void append_utf8(std::string& out, uint32_t codepoint);

}  // namespace swiftkv::tokenizer
