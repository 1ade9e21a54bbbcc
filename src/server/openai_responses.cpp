#include "server/openai_responses.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>

namespace swiftkv::server {

namespace {

// JSON has no NaN or infinity: the first prompt token's NaN is null, and an impossible token's
// -inf is -9999 (as vLLM writes it).
Json logprob_json(float logprob) {
  if (std::isnan(logprob)) return nullptr;
  return std::isinf(logprob) ? -9999.0 : static_cast<double>(logprob);
}

int64_t code_points(const std::string& text) {
  int64_t count = 0;
  for (unsigned char byte : text) count += (byte & 0xC0) != 0x80;
  return count;
}

Json utf8_bytes(const std::string& text) {
  Json bytes = Json::array();
  for (unsigned char byte : text) bytes.push_back(byte);
  return bytes;
}

std::string random_hex(size_t digits) {
  std::random_device random;
  std::string hex;
  while (hex.size() < digits) {
    char piece[9];
    std::snprintf(piece, sizeof piece, "%08x", random());
    hex += piece;
  }
  return hex.substr(0, digits);
}

}  // namespace

Json finish_reason_json(runtime::FinishReason reason) {
  if (reason == runtime::FinishReason::None) return nullptr;
  return runtime::finish_reason_name(reason);
}

std::string TokenTexts::alternative(int32_t id) const {
  tokenizer::StreamDecoder decoder = decoder_;
  std::string text = decoder.push(id);
  return text.empty() ? decoder.finish() : text;  // a lone byte token shows as U+FFFD
}

namespace {

Json no_logprobs(Endpoint endpoint) {
  if (endpoint == Endpoint::ChatCompletions) return {{"content", Json::array()}};
  return {{"tokens", Json::array()},
          {"token_logprobs", Json::array()},
          {"top_logprobs", Json::array()},
          {"text_offset", Json::array()}};
}

}  // namespace

LogprobsBuilder::LogprobsBuilder(const tokenizer::Tokenizer& tokenizer, Endpoint endpoint)
    : texts_(tokenizer), endpoint_(endpoint), all_(no_logprobs(endpoint)) {}

Json LogprobsBuilder::add(const std::vector<runtime::TokenLogprob>& entries) {
  Json piece = no_logprobs(endpoint_);
  for (const runtime::TokenLogprob& entry : entries) {
    // Alternatives first: their texts continue the text before this token.
    std::vector<std::pair<std::string, float>> alternatives;
    bool chosen_in_top = false;
    for (const auto& [id, logprob] : entry.top) {
      alternatives.emplace_back(texts_.alternative(id), logprob);
      chosen_in_top |= id == entry.token;
    }
    const std::string chosen_text = texts_.next(entry.token);
    if (endpoint_ == Endpoint::ChatCompletions) {
      Json top = Json::array();
      for (const auto& [text, logprob] : alternatives)
        top.push_back({{"token", text}, {"logprob", logprob_json(logprob)}, {"bytes", utf8_bytes(text)}});
      piece["content"].push_back({{"token", chosen_text},
                                  {"logprob", logprob_json(entry.logprob)},
                                  {"bytes", utf8_bytes(chosen_text)},
                                  {"top_logprobs", std::move(top)}});
    } else {
      // {text: logprob} of the alternatives plus the chosen token (as vLLM); null where nothing
      // predicts the token (the first prompt token).
      Json top = nullptr;
      if (!std::isnan(entry.logprob)) {
        top = Json::object();
        for (const auto& [text, logprob] : alternatives)
          if (!top.contains(text)) top[text] = logprob_json(logprob);
        if (!chosen_in_top && !top.contains(chosen_text)) top[chosen_text] = logprob_json(entry.logprob);
      }
      piece["tokens"].push_back(chosen_text);
      piece["token_logprobs"].push_back(logprob_json(entry.logprob));
      piece["top_logprobs"].push_back(std::move(top));
      piece["text_offset"].push_back(text_offset_);
      text_offset_ += code_points(chosen_text);
    }
  }
  for (auto& [key, list] : piece.items())
    for (const Json& element : list) all_[key].push_back(element);
  return piece;
}

ChoiceBuilder::ChoiceBuilder(const CompletionRequest& request, size_t index,
                             const tokenizer::Tokenizer& tokenizer)
    : request_(request), index_(index), logprobs_(tokenizer, request.endpoint) {
  if (!request.echo) logprobs_.prime(request.prompts.at(index).ids);
}

Json ChoiceBuilder::add(const runtime::RequestOutput& event) {
  std::string text;
  std::vector<runtime::TokenLogprob> entries;
  if (!started_) {
    started_ = true;
    if (request_.echo) {
      text = request_.prompts[index_].text;
      entries = event.prompt_logprobs;
    }
  }
  if (!request_.drop_generated) {
    text += event.text;
    entries.insert(entries.end(), event.logprobs.begin(), event.logprobs.end());
    completion_tokens_ = event.generated_tokens;
  }
  prompt_tokens_ = event.prompt_tokens;
  finish_reason_ = event.finish_reason;
  // The token generated only to score an echoed prompt did not end it: the length did.
  if (request_.drop_generated && finished()) finish_reason_ = runtime::FinishReason::Length;
  stop_reason_ = event.stop_reason;
  text_ += text;
  Json logprobs = request_.logprobs ? logprobs_.add(entries) : Json(nullptr);
  if (text.empty() && entries.empty() && !finished()) return nullptr;
  return choice_json(text, std::move(logprobs), /*delta=*/true);
}

Json ChoiceBuilder::choice() const {
  return choice_json(text_, request_.logprobs ? logprobs_.all() : Json(nullptr), /*delta=*/false);
}

Json ChoiceBuilder::role_delta() const {
  return {{"index", index_},
          {"delta", {{"role", "assistant"}, {"content", ""}}},
          {"logprobs", nullptr},
          {"finish_reason", nullptr}};
}

Json ChoiceBuilder::choice_json(const std::string& text, Json logprobs, bool delta) const {
  Json choice = {{"index", index_}};
  if (request_.endpoint == Endpoint::Completions)
    choice["text"] = text;
  else if (delta)
    choice["delta"] = text.empty() ? Json::object() : Json{{"content", text}};
  else
    choice["message"] = {{"role", "assistant"}, {"content", text}};
  choice["logprobs"] = std::move(logprobs);
  choice["finish_reason"] = finish_reason_json(finish_reason_);
  choice["stop_reason"] = stop_reason_.empty() ? Json(nullptr) : Json(stop_reason_);
  return choice;
}

ResponseHeader new_response_header(Endpoint endpoint, const std::string& model) {
  ResponseHeader header;
  header.endpoint = endpoint;
  header.id = (endpoint == Endpoint::Completions ? "cmpl-" : "chatcmpl-") + random_hex(32);
  header.created =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  header.model = model;
  return header;
}

Json usage_json(int64_t prompt_tokens, int64_t completion_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens}};
}

namespace {

Json envelope(const ResponseHeader& header, const char* object, Json choices) {
  return {{"id", header.id},
          {"object", object},
          {"created", header.created},
          {"model", header.model},
          {"choices", std::move(choices)}};
}

}  // namespace

Json response_json(const ResponseHeader& header, Json choices, Json usage) {
  const char* object = header.endpoint == Endpoint::Completions ? "text_completion" : "chat.completion";
  Json response = envelope(header, object, std::move(choices));
  response["usage"] = std::move(usage);
  return response;
}

Json chunk_json(const ResponseHeader& header, Json choices) {
  const char* object = header.endpoint == Endpoint::Completions ? "text_completion" : "chat.completion.chunk";
  return envelope(header, object, std::move(choices));
}

std::string sse_event(const Json& json) { return "data: " + to_wire(json) + "\n\n"; }

}  // namespace swiftkv::server
