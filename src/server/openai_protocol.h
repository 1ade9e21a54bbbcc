#pragma once
// OpenAI's /v1/completions and /v1/chat/completions requests (with vLLM's extensions top_k,
// min_p, repetition_penalty, ignore_eos, add_special_tokens) parsed and validated into engine
// requests. Pure: no HTTP, no engine; every refusal is an ApiError (400) naming the field.
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/engine.h"
#include "server/api_error.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace swiftkv::server {

// What the protocol needs to know about the model being served.
struct ServedModel {
  std::string name;  // --served-model-name: requests naming another model are refused
  const tokenizer::Tokenizer* tokenizer = nullptr;
  const tokenizer::ChatTemplate* chat_template = nullptr;  // null: chat requests are refused
  int64_t vocab_size = 0;                                  // the model's (token ids are checked against it)
  int64_t max_model_len = 0;
  runtime::SamplingParams default_sampling;  // vLLM's defaults overridden by generation_config.json
};

enum class Endpoint { Completions, ChatCompletions };

struct PromptInput {
  std::vector<int32_t> ids;
  std::string text;  // the prompt as text (echo): the string given, or the given ids decoded
};

struct CompletionRequest {
  Endpoint endpoint = Endpoint::Completions;
  std::vector<PromptInput> prompts;  // one choice each, `index` in this order
  runtime::EngineRequest engine;     // everything but the prompt
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage: a final chunk with the usage
  bool echo = false;           // completions: the prompt (and its logprobs) lead the choice
  bool logprobs = false;       // report logprobs; engine.logprobs is the number of alternatives
  // echo with max_tokens 0 (as vLLM allows): the engine generates one token, which is dropped.
  bool drop_generated = false;
};

CompletionRequest parse_completion_request(const Json& body, const ServedModel& model);
CompletionRequest parse_chat_request(const Json& body, const ServedModel& model);

// 400 unless `model` is absent or names the served model.
void check_model_field(const Json& body, const ServedModel& model);
// Token ids given by a client: integers in [0, vocab_size); `field` names them in errors.
std::vector<int32_t> parse_token_ids(const Json& ids, const std::string& field, int64_t vocab_size);

}  // namespace swiftkv::server
