#pragma once
// tokenizer.json "pre_tokenizer": splits normalised text into the words BPE encodes one at a
// time (GPT-2's regex, Llama-3/Qwen's Split regexes, SentencePiece's Metaspace) and maps
// them to the model's alphabet (ByteLevel).
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace swiftkv::tokenizer {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces `words` by their pieces. starts_text: words[0] begins the whole input (not
  // text after an added token), which Metaspace's prepend_scheme "first" needs.
  virtual void split(std::vector<std::string>& words, bool starts_text) const = 0;
};

// null JSON -> nullptr (the whole piece is one word). Unknown types throw swiftkv::Error.
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& spec);

// GPT-2's pre-tokenizer regex (ByteLevel with use_regex: true).
extern const char* const kGpt2Pattern;

}  // namespace swiftkv::tokenizer
