#pragma once
// Unicode Normalization Form C (canonical decomposition, canonical ordering, canonical
// composition), as Hugging Face's NFC normalizer (Qwen2/Qwen3) applies it.
#include <string>
#include <string_view>

namespace swiftkv::tokenizer {

// text must be valid UTF-8.
std::string to_nfc(std::string_view text);

}  // namespace swiftkv::tokenizer
