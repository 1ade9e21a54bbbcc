#include "server/tokenize_api.h"

#include "server/chat_prompt.h"
#include "server/request_fields.h"

namespace swiftkv::server {

Json tokenize_response(const Json& body, const ServedModel& model) {
  check_model_field(body, model);
  RequestFields fields(body);
  std::vector<int32_t> ids;
  if (fields.has("messages")) {
    ids = chat_prompt_ids(body, model);
  } else {
    auto prompt = fields.string("prompt");
    if (!prompt) throw bad_request("`prompt` (a string) or `messages` is required", "prompt");
    ids = model.tokenizer->encode(*prompt, fields.boolean("add_special_tokens").value_or(true));
  }
  Json token_strs = nullptr;
  if (fields.boolean("return_token_strs").value_or(false)) {
    token_strs = Json::array();
    for (int32_t id : ids) token_strs.push_back(model.tokenizer->id_to_token(id));
  }
  return {{"count", ids.size()},
          {"max_model_len", model.max_model_len},
          {"tokens", ids},
          {"token_strs", token_strs}};
}

Json detokenize_response(const Json& body, const ServedModel& model) {
  check_model_field(body, model);
  const Json* tokens = RequestFields(body).find("tokens");
  if (!tokens) throw bad_request("`tokens` is required", "tokens");
  const std::vector<int32_t> ids = parse_token_ids(*tokens, "tokens", model.vocab_size);
  return {{"prompt", model.tokenizer->decode(ids)}};
}

}  // namespace swiftkv::server
