#pragma once
// tok512.bin (llama2.c's tokenizer) -> tokenizer.json in Hugging Face's Llama-2 form (BPE,
// "▁" pieces, byte_fallback, merges ranked by score) and the matching tokenizer_config.json.
#include <filesystem>
#include <nlohmann/json.hpp>

namespace swiftkv::tokenizer {

struct HfTokenizerFiles {
  nlohmann::json tokenizer_json;
  nlohmann::json tokenizer_config_json;
};
HfTokenizerFiles convert_llama2c_tokenizer(const std::filesystem::path& tokenizer_bin);

}  // namespace swiftkv::tokenizer
