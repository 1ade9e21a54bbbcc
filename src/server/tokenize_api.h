#pragma once
// vLLM's POST /tokenize and POST /detokenize.
//   /tokenize   {"prompt": str, "add_special_tokens": true} or {"messages": [...],
//               "add_generation_prompt": true, ...} (rendered with the chat template), plus
//               "return_token_strs" -> {"count", "max_model_len", "tokens", "token_strs"}
//   /detokenize {"tokens": [ids]} -> {"prompt": str}
#include "server/openai_protocol.h"

namespace swiftkv::server {

Json tokenize_response(const Json& body, const ServedModel& model);
Json detokenize_response(const Json& body, const ServedModel& model);

}  // namespace swiftkv::server
