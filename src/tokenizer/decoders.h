#pragma once
// tokenizer.json "decoder": turns vocabulary pieces back into text (byte-level mapping,
// "▁" -> " ", <0xXX> byte tokens, ...). Like Hugging Face's decode_chain, each step maps a
// list of pieces to a list of pieces; decode() joins the last list.
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace swiftkv::tokenizer {

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void decode_chain(std::vector<std::string>& pieces) const = 0;
};

// null JSON -> nullptr (Hugging Face then joins pieces with spaces). Unknown types throw.
std::unique_ptr<Decoder> make_decoder(const nlohmann::json& spec);

// Runs `decoder` (may be null) and joins the pieces into valid UTF-8 text.
std::string run_decoder(const Decoder* decoder, std::vector<std::string> pieces);

}  // namespace swiftkv::tokenizer
