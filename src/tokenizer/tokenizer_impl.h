#pragma once
// Tokenizer's parts, parsed once from tokenizer.json / tokenizer_config.json (internal to
// the tokenizer layer and its tests).
#include <memory>
#include <string>
#include <vector>

#include "tokenizer/added_vocabulary.h"
#include "tokenizer/bpe.h"
#include "tokenizer/decoders.h"
#include "tokenizer/normalizers.h"
#include "tokenizer/pre_tokenizers.h"
#include "tokenizer/tokenizer.h"

namespace swiftkv::tokenizer {

struct Tokenizer::Impl {
  std::unique_ptr<Normalizer> normalizer;       // may be null
  std::unique_ptr<PreTokenizer> pre_tokenizer;  // may be null
  std::unique_ptr<BpeModel> model;
  std::unique_ptr<AddedVocabulary> added;
  std::unique_ptr<Decoder> decoder;  // may be null

  // What add_special_tokens puts around the text (post-processor template, adjusted by
  // tokenizer_config's add_bos_token / add_eos_token).
  std::vector<int32_t> prefix_ids, suffix_ids;

  std::vector<std::string> id_to_token;  // model vocabulary and added tokens; "" = unused id
  std::vector<bool> special;             // by id
  TokenIds added_ids;                    // added token content -> id

  std::string bos_token, eos_token, chat_template;

  void encode_text(std::string_view text, bool starts_text, std::vector<int32_t>& ids) const;
};

}  // namespace swiftkv::tokenizer
