#pragma once
// GPT-2's byte-level alphabet: every byte maps to one printable character (printable ASCII
// and most of Latin-1 map to themselves, the rest to U+0100..), so any byte string becomes
// text a BPE vocabulary can cover.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace swiftkv::tokenizer {

// The UTF-8 encoding of the character byte b maps to.
const std::array<std::string, 256>& byte_to_char();
// Maps text (any bytes) to its byte-level form.
std::string bytes_to_byte_level(std::string_view bytes);
// The byte a byte-level character stands for, or -1 when codepoint is not in the alphabet.
int byte_level_char_to_byte(uint32_t codepoint);

}  // namespace swiftkv::tokenizer
