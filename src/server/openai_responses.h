#pragma once
// OpenAI response JSON built from the engine's events: whole responses, stream chunks (SSE),
// usage, and logprobs in both shapes (legacy completions: tokens / token_logprobs /
// top_logprobs / text_offset; chat: content[{token, logprob, bytes, top_logprobs}]).
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/engine.h"
#include "server/openai_protocol.h"

namespace swiftkv::server {

// "stop", "length", "abort"; null while unfinished.
Json finish_reason_json(runtime::FinishReason reason);

// The text each token adds in context (SentencePiece's leading space, byte tokens that complete a
// character), decoded the way the engine decodes the completion text.
class TokenTexts {
 public:
  explicit TokenTexts(const tokenizer::Tokenizer& tokenizer)
      : decoder_(tokenizer, /*skip_special_tokens=*/true) {}
  void prime(const std::vector<int32_t>& context) { decoder_.prime(context); }
  std::string next(int32_t id) { return decoder_.push(id); }
  // What `id` would add at this point instead of the next token (the position does not move).
  std::string alternative(int32_t id) const;

 private:
  tokenizer::StreamDecoder decoder_;
};

// Logprobs of one choice, in its endpoint's shape, as a whole and per stream chunk.
class LogprobsBuilder {
 public:
  LogprobsBuilder(const tokenizer::Tokenizer& tokenizer, Endpoint endpoint);
  // The tokens' texts continue `context` (the prompt when it is not echoed).
  void prime(const std::vector<int32_t>& context) { texts_.prime(context); }
  // Appends the entries of these tokens to the whole; returns them alone (a chunk's share).
  Json add(const std::vector<runtime::TokenLogprob>& entries);
  const Json& all() const { return all_; }

 private:
  TokenTexts texts_;
  Endpoint endpoint_;
  int64_t text_offset_ = 0;  // code points of the token texts so far (legacy text_offset)
  Json all_;
};

// One choice, built up from its request's events.
class ChoiceBuilder {
 public:
  ChoiceBuilder(const CompletionRequest& request, size_t index, const tokenizer::Tokenizer& tokenizer);
  // Applies an event; returns this choice's part of a stream chunk, or null when the event adds
  // nothing to send.
  Json add(const runtime::RequestOutput& event);
  Json choice() const;      // the whole choice, for a non-streaming response
  Json role_delta() const;  // chat streams open with a chunk carrying the assistant role
  bool finished() const { return finish_reason_ != runtime::FinishReason::None; }
  int64_t prompt_tokens() const { return prompt_tokens_; }
  int64_t completion_tokens() const { return completion_tokens_; }

 private:
  Json choice_json(const std::string& text, Json logprobs, bool delta) const;

  const CompletionRequest& request_;
  size_t index_;
  LogprobsBuilder logprobs_;
  bool started_ = false;
  std::string text_;
  runtime::FinishReason finish_reason_ = runtime::FinishReason::None;
  std::string stop_reason_;
  int64_t prompt_tokens_ = 0, completion_tokens_ = 0;
};

// The envelope shared by a response and its chunks.
struct ResponseHeader {
  Endpoint endpoint = Endpoint::Completions;
  std::string id;  // "cmpl-..." / "chatcmpl-..."
  int64_t created = 0;
  std::string model;
};
ResponseHeader new_response_header(Endpoint endpoint, const std::string& model);

Json usage_json(int64_t prompt_tokens, int64_t completion_tokens);
Json response_json(const ResponseHeader& header, Json choices, Json usage);
Json chunk_json(const ResponseHeader& header, Json choices);
// Server-sent events framing: "data: {...}\n\n"; the stream ends with kSseDone.
std::string sse_event(const Json& json);
inline constexpr const char* kSseDone = "data: [DONE]\n\n";

}  // namespace swiftkv::server
