#include "tokenizer/utf8.h"

#include "tokenizer/tokenizer.h"

namespace swiftkv::tokenizer {

size_t utf8_valid_prefix(std::string_view text, bool* complete) {
  *complete = true;
  if (text.empty()) return 0;
  auto lead = static_cast<unsigned char>(text[0]);
  if (lead < 0x80) return 1;
  size_t length;
  // The second byte's range excludes overlongs (E0, F0), surrogates (ED) and > U+10FFFF (F4).
  unsigned char low = 0x80, high = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;
    if (lead == 0xED) high = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;
    if (lead == 0xF4) high = 0x8F;
  } else {
    return 0;
  }
  for (size_t i = 1; i < length; ++i) {
    if (i >= text.size()) {
      *complete = false;
      return i;
    }
    auto byte = static_cast<unsigned char>(text[i]);
    if (i > 1) low = 0x80, high = 0xBF;
    if (byte < low || byte > high) {
      *complete = false;
      return i;  // a prefix that can never complete: the caller sees text[i] breaks it
    }
  }
  return length;
}

size_t find_invalid_utf8(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    // ASCII fast path: most text is mostly ASCII.
    if (static_cast<unsigned char>(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    bool complete;
    size_t length = utf8_valid_prefix(text.substr(pos), &complete);
    if (length == 0 || !complete) return pos;
    pos += length;
  }
  return std::string_view::npos;
}

std::string sanitize_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    bool complete;
    size_t length = utf8_valid_prefix(text.substr(pos), &complete);
    if (length > 0 && complete) {
      out.append(text.substr(pos, length));
      pos += length;
    } else {
      // One U+FFFD per maximal invalid subpart (at least one byte), as the Unicode standard
      // recommends and Rust's from_utf8_lossy does.
      out += "\xEF\xBF\xBD";
      pos += length == 0 ? 1 : length;
    }
  }
  return out;
}

uint32_t next_codepoint(std::string_view text, size_t& pos) {
  auto lead = static_cast<unsigned char>(text[pos]);
  size_t length = utf8_sequence_length(text[pos]);
  uint32_t codepoint = length == 1   ? lead
                       : length == 2 ? lead & 0x1F
                       : length == 3 ? lead & 0x0F
                                     : lead & 0x07;
  for (size_t i = 1; i < length && pos + i < text.size(); ++i)
    codepoint = (codepoint << 6) | (static_cast<unsigned char>(text[pos + i]) & 0x3F);
  pos += length;
  return codepoint;
}

void append_utf8(std::string& out, uint32_t codepoint) {
  if (codepoint < 0x80) {
    out += static_cast<char>(codepoint);
  } else if (codepoint < 0x800) {
    out += static_cast<char>(0xC0 | (codepoint >> 6));
    out += static_cast<char>(0x80 | (codepoint & 0x3F));
  } else if (codepoint < 0x10000) {
    out += static_cast<char>(0xE0 | (codepoint >> 12));
    out += static_cast<char>(0x80 | ((codepoint >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (codepoint & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (codepoint >> 18));
    out += static_cast<char>(0x80 | ((codepoint >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((codepoint >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (codepoint & 0x3F));
  }
}

}  // namespace swiftkv::tokenizer
