#include "server/chat_prompt.h"

#include "server/request_fields.h"

namespace swiftkv::server {

namespace {

// Content given as parts ([{"type": "text", "text": ...}, ...]) is joined with newlines, as
// vLLM does for text-only models.
Json text_content(const Json& content, const std::string& field) {
  if (content.is_null() || content.is_string()) return content;
  if (!content.is_array()) RequestFields::wrong(field, "a string, null or a list of text parts");
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const Json& part = content[i];
    const std::string part_field = field + "[" + std::to_string(i) + "]";
    if (!part.is_object() || part.value("type", Json()) != "text" || !part.contains("text") ||
        !part["text"].is_string())
      RequestFields::wrong(part_field,
                           "a text part {\"type\": \"text\", \"text\": \"...\"} (only text is supported)");
    if (i > 0) text += "\n";
    text += part["text"].get<std::string>();
  }
  return text;
}

Json checked_messages(const Json* messages) {
  if (!messages) throw bad_request("`messages` is required", "messages");
  if (!messages->is_array() || messages->empty())
    RequestFields::wrong("messages", "a non-empty list of messages");
  Json checked = Json::array();
  for (size_t i = 0; i < messages->size(); ++i) {
    const std::string field = "messages[" + std::to_string(i) + "]";
    Json message = (*messages)[i];
    if (!message.is_object()) RequestFields::wrong(field, "an object with `role` and `content`");
    if (!message.contains("role") || !message["role"].is_string())
      RequestFields::wrong(field + ".role", "a string");
    message["content"] = text_content(message.value("content", Json()), field + ".content");
    checked.push_back(std::move(message));
  }
  return checked;
}

// Template variables are plain JSON (the renderer's type); the request keeps the client's key order.
nlohmann::json plain(const Json& json) { return nlohmann::json(json); }

}  // namespace

std::vector<int32_t> chat_prompt_ids(const Json& body, const ServedModel& model) {
  if (!model.chat_template)
    throw bad_request(
        "this model has no chat template (tokenizer_config.json \"chat_template\"); start the server with "
        "--chat-template FILE",
        "messages");
  RequestFields fields(body);
  const Json messages = checked_messages(fields.find("messages"));
  if (fields.boolean("continue_final_message").value_or(false))
    throw bad_request("`continue_final_message` is not supported", "continue_final_message");
  const tokenizer::Tokenizer& tokenizer = *model.tokenizer;
  tokenizer::ChatTemplateOptions options;
  options.add_generation_prompt = fields.boolean("add_generation_prompt").value_or(true);
  options.bos_token = tokenizer.bos_token();
  options.eos_token = tokenizer.eos_token();
  if (const Json* kwargs = fields.object("chat_template_kwargs")) options.extra = plain(*kwargs);
  if (const Json* tools = fields.find("tools")) {
    if (!tools->is_array()) RequestFields::wrong("tools", "a list of tools");
    if (options.extra.is_null()) options.extra = nlohmann::json::object();
    options.extra["tools"] = plain(*tools);
  }
  std::string text;
  try {
    text = model.chat_template->render(messages, options);
  } catch (const Error& error) {
    throw bad_request(std::string("the chat template cannot render these messages: ") + error.what(),
                      "messages");
  }
  const bool template_wrote_bos = !options.bos_token.empty() && text.starts_with(options.bos_token);
  const bool add_special_tokens = fields.boolean("add_special_tokens").value_or(!template_wrote_bos);
  std::vector<int32_t> ids = tokenizer.encode(text, add_special_tokens);
  if (ids.empty()) throw bad_request("the rendered chat prompt has no tokens", "messages");
  return ids;
}

}  // namespace swiftkv::server
