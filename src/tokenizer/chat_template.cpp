// ChatTemplate: JSON conversations -> template values -> the Jinja subset (jinja*.cpp).
#include "tokenizer/chat_template.h"

#include "common/error.h"
#include "tokenizer/jinja.h"

namespace swiftkv::tokenizer {
namespace {

template <typename Json>
jinja::Value to_value(const Json& j) {
  using jinja::Value;
  switch (j.type()) {
    case nlohmann::json::value_t::null:
      return Value::none();
    case nlohmann::json::value_t::boolean:
      return Value::from_bool(j.template get<bool>());
    case nlohmann::json::value_t::number_integer:
      return Value::from_int(j.template get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      uint64_t u = j.template get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return Value::from_float(static_cast<double>(u));
      return Value::from_int(static_cast<int64_t>(u));
    }
    case nlohmann::json::value_t::number_float:
      return Value::from_float(j.template get<double>());
    case nlohmann::json::value_t::string:
      return Value::from_string(j.template get<std::string>());
    case nlohmann::json::value_t::array: {
      jinja::Array items;
      for (const auto& item : j) items.push_back(to_value(item));
      return Value::from_array(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      jinja::Object o;
      for (auto it = j.begin(); it != j.end(); ++it) o.entries.emplace_back(it.key(), to_value(it.value()));
      return Value::from_object(std::move(o));
    }
    default:
      throw Error("chat template: unsupported JSON value (binary) in the conversation");
  }
}

template <typename Json>
std::string render_with(const jinja::Template& tmpl, const Json& messages,
                        const ChatTemplateOptions& options) {
  if (!messages.is_array())
    throw Error("chat template: messages must be a JSON array of {role, content} objects");
  for (const auto& message : messages)
    if (!message.is_object())
      throw Error("chat template: every message must be a JSON object, got " + message.dump());
  if (!options.extra.is_null() && !options.extra.is_object())
    throw Error("chat template: extra template variables must be a JSON object");
  jinja::RenderContext context;
  context.date = options.date;
  // As transformers' apply_chat_template: tools and documents are None unless given.
  context.globals.set("messages", to_value(messages));
  context.globals.set("tools", jinja::Value::none());
  context.globals.set("documents", jinja::Value::none());
  context.globals.set("add_generation_prompt", jinja::Value::from_bool(options.add_generation_prompt));
  context.globals.set("bos_token", jinja::Value::from_string(options.bos_token));
  context.globals.set("eos_token", jinja::Value::from_string(options.eos_token));
  if (options.extra.is_object())
    for (auto it = options.extra.begin(); it != options.extra.end(); ++it)
      context.globals.set(it.key(), to_value(it.value()));
  return jinja::render(tmpl, context);
}

}  // namespace

ChatTemplate::ChatTemplate(const std::string& source) : template_(jinja::parse(source)) {}
ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;

std::string ChatTemplate::render(const nlohmann::json& messages, const ChatTemplateOptions& options) const {
  return render_with(*template_, messages, options);
}

std::string ChatTemplate::render(const nlohmann::ordered_json& messages,
                                 const ChatTemplateOptions& options) const {
  return render_with(*template_, messages, options);
}

}  // namespace swiftkv::tokenizer
