#pragma once
// tokenizer.json "normalizer": rewrites each piece of text between added tokens before
// pre-tokenization (Llama-2's Prepend("▁") + Replace(" ", "▁"), Qwen's NFC, ...).
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace swiftkv::tokenizer {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string normalize(std::string text) const = 0;
};

// null JSON -> nullptr (no normalisation). Unknown types throw swiftkv::Error.
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& spec);

}  // namespace swiftkv::tokenizer
