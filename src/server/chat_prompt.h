#pragma once
// Chat messages -> prompt token ids: validated, rendered with the chat template, tokenized.
// Shared by /v1/chat/completions and /tokenize.
#include <cstdint>
#include <vector>

#include "server/openai_protocol.h"

namespace swiftkv::server {

// Reads messages, add_generation_prompt (default true), add_special_tokens, chat_template_kwargs
// and tools from the request body. The rendered text is tokenized without adding BOS when the
// template already wrote it (as vLLM does); otherwise BOS is added as for plain text, the way the
// chat training data is built (unless add_special_tokens says otherwise).
std::vector<int32_t> chat_prompt_ids(const Json& body, const ServedModel& model);

}  // namespace swiftkv::server
