#pragma once
// Renders a Hugging Face chat template (tokenizer_config.json "chat_template") with the
// Jinja subset the real templates of Llama-3.1, Qwen3, Gemma-3 and DeepSeek-V3 use, the way
// transformers does: trim_blocks and lstrip_blocks on, undefined variables falsy and empty,
// raise_exception() and strftime_now() provided, tojson like Python's json.dumps.
//
// Anything outside the subset is refused when parsed (or, for an unknown filter / method
// that only shows at run time, when rendered) with a swiftkv::Error naming the construct and
// its template line -- never a silently wrong prompt.
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace swiftkv::tokenizer {

struct ChatTemplateOptions {
  bool add_generation_prompt = false;
  std::string bos_token, eos_token;
  // The date strftime_now() formats, as "%d %b %Y" (e.g. "26 Jul 2024"); empty = today.
  // Tests pin it so renders are reproducible.
  std::string date;
  // Further template variables (tools, enable_thinking, documents, ...); null or an object.
  // tools and documents are None unless given here, as in transformers.
  nlohmann::json extra;
};

namespace jinja {
struct Template;  // the parsed template (jinja_ast.h)
}

class ChatTemplate {
 public:
  // Parses once; throws swiftkv::Error naming an unsupported construct and its line.
  explicit ChatTemplate(const std::string& source);
  ~ChatTemplate();
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;

  // messages: JSON array of {"role": ..., "content": ...} objects (content may be a string or
  // null; other keys such as tool_calls are passed through). Throws swiftkv::Error for a
  // template's raise_exception(msg) (the message is msg) and for run-time errors.
  std::string render(const nlohmann::json& messages, const ChatTemplateOptions& options) const;
  // The same, keeping the keys of each object in the order given (as Python dicts do);
  // nlohmann::json sorts them, which shows in `x | tojson` output.
  std::string render(const nlohmann::ordered_json& messages, const ChatTemplateOptions& options) const;

 private:
  std::shared_ptr<const jinja::Template> template_;
};

}  // namespace swiftkv::tokenizer
