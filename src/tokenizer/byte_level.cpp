#include "tokenizer/byte_level.h"

#include "tokenizer/utf8.h"

namespace swiftkv::tokenizer {
namespace {

bool maps_to_itself(int byte) {
  return (byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) || byte >= 174;
}

struct Tables {
  std::array<std::string, 256> byte_to_char;
  std::array<int, 512> char_to_byte;  // every mapped code point is below U+0200
  Tables() {
    char_to_byte.fill(-1);
    int next = 256;
    for (int byte = 0; byte < 256; ++byte) {
      uint32_t codepoint = maps_to_itself(byte) ? byte : next++;
      append_utf8(byte_to_char[byte], codepoint);
      char_to_byte[codepoint] = byte;
    }
  }
};

// Immutable after construction (thread-safe static initialisation), not mutable state.
const Tables& tables() {
  static const Tables instance;
  return instance;
}

}  // namespace

const std::array<std::string, 256>& byte_to_char() { return tables().byte_to_char; }

std::string bytes_to_byte_level(std::string_view bytes) {
  const auto& map = tables().byte_to_char;
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += map[static_cast<unsigned char>(c)];
  return out;
}

int byte_level_char_to_byte(uint32_t codepoint) {
  return codepoint < 512 ? tables().char_to_byte[codepoint] : -1;
}

}  // namespace swiftkv::tokenizer
