#include "server/openai_protocol.h"

#include <limits>
#include <random>

#include "server/chat_prompt.h"
#include "server/request_fields.h"

namespace swiftkv::server {

namespace {

constexpr int64_t kMaxLogprobs = 20;              // vLLM's default max_logprobs
constexpr int32_t kDefaultCompletionTokens = 16;  // OpenAI's and vLLM's default for /v1/completions

const char* kPromptShapes = "a string, a list of strings, a list of token ids or a list of token id lists";

PromptInput text_prompt(const Json& text, const ServedModel& model, bool add_special_tokens) {
  PromptInput prompt;
  prompt.text = text.get<std::string>();
  try {
    prompt.ids = model.tokenizer->encode(prompt.text, add_special_tokens);
  } catch (const Error& error) {
    throw bad_request(std::string("cannot tokenize `prompt`: ") + error.what(), "prompt");
  }
  return prompt;
}

PromptInput id_prompt(const Json& ids, const ServedModel& model) {
  PromptInput prompt;
  prompt.ids = parse_token_ids(ids, "prompt", model.vocab_size);
  prompt.text = tokenizer::sanitize_utf8(model.tokenizer->decode(prompt.ids, /*skip_special_tokens=*/true));
  return prompt;
}

std::vector<PromptInput> parse_prompts(const Json& body, const ServedModel& model) {
  RequestFields fields(body);
  const Json* prompt = fields.find("prompt");
  if (!prompt) throw bad_request("`prompt` is required", "prompt");
  const bool add_special_tokens = fields.boolean("add_special_tokens").value_or(true);
  std::vector<PromptInput> prompts;
  if (prompt->is_string()) {
    prompts.push_back(text_prompt(*prompt, model, add_special_tokens));
  } else if (prompt->is_array() && !prompt->empty()) {
    const Json& first = prompt->front();
    if (first.is_number()) {
      prompts.push_back(id_prompt(*prompt, model));
    } else {
      for (const Json& element : *prompt) {
        if (element.is_string() && first.is_string())
          prompts.push_back(text_prompt(element, model, add_special_tokens));
        else if (element.is_array() && first.is_array())
          prompts.push_back(id_prompt(element, model));
        else
          RequestFields::wrong("prompt", kPromptShapes);
      }
    }
  } else {
    RequestFields::wrong("prompt", std::string(kPromptShapes) + " (not empty)");
  }
  for (const PromptInput& input : prompts)
    if (input.ids.empty()) throw bad_request("`prompt` has no tokens", "prompt");
  return prompts;
}

// Sampling and stopping fields shared by both endpoints.
void parse_sampling(const RequestFields& fields, const ServedModel& model, runtime::EngineRequest& request) {
  runtime::SamplingParams& sampling = request.sampling;
  sampling = model.default_sampling;
  constexpr double kHuge = std::numeric_limits<float>::max();
  if (auto value = fields.number("temperature", 0, kHuge)) sampling.temperature = static_cast<float>(*value);
  if (auto value = fields.number("top_p", std::numeric_limits<float>::min(), 1))
    sampling.top_p = static_cast<float>(*value);
  if (auto value = fields.integer("top_k", -1, std::numeric_limits<int32_t>::max()))
    sampling.top_k = static_cast<int32_t>(*value);
  if (auto value = fields.number("min_p", 0, 1)) sampling.min_p = static_cast<float>(*value);
  if (auto value = fields.number("repetition_penalty", std::numeric_limits<float>::min(), kHuge))
    sampling.repetition_penalty = static_cast<float>(*value);
  if (auto value = fields.number("presence_penalty", -2, 2))
    sampling.presence_penalty = static_cast<float>(*value);
  if (auto value = fields.number("frequency_penalty", -2, 2))
    sampling.frequency_penalty = static_cast<float>(*value);
  // No seed: a fresh one per request, so that equal requests sample differently (as in vLLM).
  if (auto value =
          fields.integer("seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()))
    sampling.seed = static_cast<uint64_t>(*value);
  else
    sampling.seed = (static_cast<uint64_t>(std::random_device{}()) << 32) | std::random_device{}();

  request.stop = fields.strings("stop");
  for (const std::string& stop : request.stop)
    if (stop.empty()) throw bad_request("`stop` strings must not be empty", "stop");
  request.ignore_eos = fields.boolean("ignore_eos").value_or(false);

  // Options the engine does not offer are refused rather than silently ignored.
  constexpr int64_t kMaxInt = std::numeric_limits<int32_t>::max();
  for (const char* name : {"n", "best_of"})
    if (auto value = fields.integer(name, 1, kMaxInt); value && *value != 1)
      throw bad_request(std::string("only `") + name + "` = 1 is supported", name);
  if (auto value = fields.integer("min_tokens", 0, kMaxInt); value && *value != 0)
    throw bad_request("`min_tokens` is not supported", "min_tokens");
  if (const Json* bias = fields.object("logit_bias"); bias && !bias->empty())
    throw bad_request("`logit_bias` is not supported", "logit_bias");
  if (fields.boolean("use_beam_search").value_or(false))
    throw bad_request("`use_beam_search` is not supported", "use_beam_search");
}

void parse_streaming(const RequestFields& fields, CompletionRequest& request) {
  request.stream = fields.boolean("stream").value_or(false);
  if (const Json* options = fields.object("stream_options"))
    request.include_usage = RequestFields(*options).boolean("include_usage").value_or(false);
}

// `field` (max_tokens) given or defaulted, checked against the context: prompt + completion must fit.
void set_max_tokens(CompletionRequest& request, const RequestFields& fields, const char* field,
                    const ServedModel& model) {
  const auto max_tokens =
      fields.integer(field, std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max());
  size_t longest = 0;
  for (const PromptInput& prompt : request.prompts) longest = std::max(longest, prompt.ids.size());
  const auto prompt_tokens = static_cast<int64_t>(longest);
  if (prompt_tokens >= model.max_model_len)
    throw bad_request("the prompt has " + std::to_string(prompt_tokens) +
                          " tokens; this model's maximum context length is " +
                          std::to_string(model.max_model_len) + " tokens (prompt and completion together)",
                      "prompt");
  const int64_t room = model.max_model_len - prompt_tokens;
  int64_t tokens =
      max_tokens.value_or(request.endpoint == Endpoint::Completions ? kDefaultCompletionTokens : room);
  if (tokens == 0 && request.echo) {
    request.drop_generated = true;
    tokens = 1;
  } else if (tokens < 1) {
    throw bad_request(std::string("`") + field + "` must be at least 1" +
                          (request.endpoint == Endpoint::Completions ? " (or 0 with echo)" : ""),
                      field);
  }
  if (tokens > room)
    throw bad_request("this model's maximum context length is " + std::to_string(model.max_model_len) +
                          " tokens, but " + std::to_string(prompt_tokens + tokens) + " were requested (" +
                          std::to_string(prompt_tokens) + " in the prompt, " + std::to_string(tokens) +
                          " for the completion); shorten the prompt or lower `" + field + "`",
                      field);
  request.engine.max_tokens = static_cast<int32_t>(tokens);
}

}  // namespace

void check_model_field(const Json& body, const ServedModel& model) {
  auto name = RequestFields(body).string("model");
  if (name && *name != model.name)
    throw bad_request("the model `" + *name + "` does not exist; this server serves `" + model.name + "`",
                      "model");
}

std::vector<int32_t> parse_token_ids(const Json& ids, const std::string& field, int64_t vocab_size) {
  if (!ids.is_array()) RequestFields::wrong(field, "a list of token ids");
  std::vector<int32_t> parsed;
  parsed.reserve(ids.size());
  for (const Json& id : ids) {
    if (!id.is_number_integer()) RequestFields::wrong(field, "a list of token ids (integers)");
    if ((id.is_number_unsigned() && id.get<uint64_t>() >= static_cast<uint64_t>(vocab_size)) ||
        id.get<int64_t>() < 0 || id.get<int64_t>() >= vocab_size)
      throw bad_request("token id " + id.dump() + " in `" + field + "` is outside the vocabulary [0, " +
                            std::to_string(vocab_size) + ")",
                        field);
    parsed.push_back(id.get<int32_t>());
  }
  return parsed;
}

CompletionRequest parse_completion_request(const Json& body, const ServedModel& model) {
  check_model_field(body, model);
  RequestFields fields(body);
  CompletionRequest request;
  request.endpoint = Endpoint::Completions;
  if (auto suffix = fields.string("suffix"); suffix && !suffix->empty())
    throw bad_request("`suffix` is not supported", "suffix");
  request.prompts = parse_prompts(body, model);
  request.echo = fields.boolean("echo").value_or(false);
  if (auto logprobs = fields.integer("logprobs", 0, kMaxLogprobs)) {
    request.logprobs = true;
    request.engine.logprobs = static_cast<int32_t>(*logprobs);
    request.engine.prompt_logprobs = request.echo;
  }
  parse_sampling(fields, model, request.engine);
  parse_streaming(fields, request);
  set_max_tokens(request, fields, "max_tokens", model);
  return request;
}

CompletionRequest parse_chat_request(const Json& body, const ServedModel& model) {
  check_model_field(body, model);
  RequestFields fields(body);
  CompletionRequest request;
  request.endpoint = Endpoint::ChatCompletions;
  request.prompts.push_back({.ids = chat_prompt_ids(body, model), .text = ""});
  const bool logprobs = fields.boolean("logprobs").value_or(false);
  const auto top_logprobs = fields.integer("top_logprobs", 0, kMaxLogprobs);
  if (top_logprobs && !logprobs)
    throw bad_request("`top_logprobs` needs `logprobs` set to true", "top_logprobs");
  if (logprobs) {
    request.logprobs = true;
    request.engine.logprobs = static_cast<int32_t>(top_logprobs.value_or(0));
  }
  parse_sampling(fields, model, request.engine);
  parse_streaming(fields, request);
  // max_completion_tokens is OpenAI's newer name; max_tokens the older one.
  set_max_tokens(request, fields,
                 fields.has("max_completion_tokens") ? "max_completion_tokens" : "max_tokens", model);
  return request;
}

}  // namespace swiftkv::server
