#pragma once
// Hugging Face tokenizer.json BPE tokenizers: byte-level (GPT-2, Llama-3, Qwen) and
// SentencePiece-style (Llama-2, TinyLlama, Mistral: "▁" pieces, byte fallback), with added /
// special tokens matched in text the way Hugging Face does.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace swiftkv::tokenizer {

class Tokenizer {
 public:
  // Reads DIR/tokenizer.json and, when present, DIR/tokenizer_config.json.
  static Tokenizer from_dir(const std::filesystem::path& model_dir);
  // tokenizer_config may be null.
  static Tokenizer from_json(const nlohmann::json& tokenizer_json, const nlohmann::json& tokenizer_config);
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Text must be valid UTF-8 (otherwise swiftkv::Error naming the byte offset).
  // add_special_tokens: prepend BOS when the tokenizer adds one (tokenizer_config
  // add_bos_token, or the post-processor's template), like HF's encode(text).
  // Special/added tokens written in the text are always matched as tokens (HF default).
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const;
  // Full decode (skip_special_tokens drops added tokens marked special).
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;

  int32_t vocab_size() const;  // including added tokens
  std::optional<int32_t> bos_id() const;
  std::vector<int32_t> eos_ids() const;  // from tokenizer_config eos_token
  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::string id_to_token(int32_t id) const;  // the raw vocabulary piece
  bool is_special(int32_t id) const;
  const std::string& chat_template() const;  // empty when none (kept for later issues)
  std::string bos_token() const;             // string form ("" when none)
  std::string eos_token() const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Incremental detokenizer for streaming: push() returns only complete UTF-8 characters;
// an incomplete sequence is held until it completes; bytes that can never form a
// character become U+FFFD. Handles SentencePiece's leading-space stripping and byte
// fallback the same way decode() does, so concatenating every push() and finish()
// equals decode(all ids).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens = false);
  // Continues after `prompt` (whose text is not emitted again): the first generated piece is
  // decoded in context, so e.g. SentencePiece's leading-space strip does not eat the space
  // between the prompt and the first generated word.
  void prime(const std::vector<int32_t>& prompt);
  std::string push(int32_t id);
  std::string finish();  // flushes held bytes (incomplete tail -> U+FFFD)

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_tokens_;
  std::vector<int32_t> ids_;
  size_t emitted_bytes_ = 0;
};

// UTF-8 helpers shared by tokenizer, server and decoder.
// Returns the byte offset of the first invalid sequence, or npos when valid.
size_t find_invalid_utf8(std::string_view text);
// Replaces every invalid sequence with U+FFFD.
std::string sanitize_utf8(std::string_view text);

}  // namespace swiftkv::tokenizer
