#include <algorithm>

#include "tokenizer/tokenizer.h"

namespace swiftkv::tokenizer {
namespace {

constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";  // U+FFFD
// An unfinished UTF-8 sequence has at most 3 bytes, which the decoders render as at most
// 3 U+FFFD (one per byte for byte-fallback tokens, one in all for byte-level text): only
// that many trailing U+FFFD can still turn into a character.
constexpr size_t kMaxPendingReplacements = 3;
// The window of ids decoded per push; trimmed back to kContextIds once it grows past
// kMaxWindowIds, so each push costs O(1) whatever the stream's length.
constexpr size_t kMaxWindowIds = 16;
constexpr size_t kContextIds = 6;

// Bytes of `text` that can no longer change when more ids arrive.
size_t final_length(const std::string& text) {
  size_t end = text.size();
  for (size_t i = 0;
       i < kMaxPendingReplacements && std::string_view(text).substr(0, end).ends_with(kReplacementCharacter);
       ++i)
    end -= kReplacementCharacter.size();
  return end;
}

}  // namespace

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {}

void StreamDecoder::prime(const std::vector<int32_t>& prompt) {
  const size_t context = std::min(prompt.size(), kContextIds);
  ids_.assign(prompt.end() - static_cast<std::ptrdiff_t>(context), prompt.end());
  emitted_bytes_ = tokenizer_.decode(ids_, skip_special_tokens_).size();
}

// Invariant: decode(ids_) = what was emitted for these ids (its first emitted_bytes_ bytes)
// + a held tail. Decoding the window, rather than each id alone, gives the decoder the
// context it needs (SentencePiece's leading-space strip applies to the first piece only,
// byte tokens combine into characters).
std::string StreamDecoder::push(int32_t id) {
  ids_.push_back(id);
  std::string text = tokenizer_.decode(ids_, skip_special_tokens_);
  size_t ready = final_length(text);
  std::string out;
  if (ready > emitted_bytes_) {
    out = text.substr(emitted_bytes_, ready - emitted_bytes_);
    emitted_bytes_ = ready;
  }
  if (ids_.size() > kMaxWindowIds) {
    // Keep only the last few ids as context. Safe when their decode ends with the same held
    // tail and still emits something before it: then the start-of-text effects (strip) stay
    // inside the context, and later ids extend it exactly as they extend the full text.
    std::vector<int32_t> context(ids_.end() - kContextIds, ids_.end());
    std::string context_text = tokenizer_.decode(context, skip_special_tokens_);
    std::string_view held = std::string_view(text).substr(emitted_bytes_);
    if (context_text.size() > held.size() && context_text.ends_with(held)) {
      ids_ = std::move(context);
      emitted_bytes_ = context_text.size() - held.size();
    }
  }
  return out;
}

std::string StreamDecoder::finish() {
  std::string text = tokenizer_.decode(ids_, skip_special_tokens_);
  std::string out = emitted_bytes_ < text.size() ? text.substr(emitted_bytes_) : std::string();
  ids_.clear();
  emitted_bytes_ = 0;
  return out;
}

}  // namespace swiftkv::tokenizer
