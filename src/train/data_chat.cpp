#include "train/data_chat.h"

#include "common/error.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace swiftkv::train {

namespace {

bool starts_with(const std::string& text, const std::string& prefix) {
  return text.size() >= prefix.size() && text.compare(0, prefix.size(), prefix) == 0;
}

// One conversation -> tokens and the assistant mask. Returns false (and counts why) when the
// conversation is skipped.
bool render_conversation(const nlohmann::json& messages, const tokenizer::ChatTemplate& chat_template,
                         const tokenizer::ChatTemplateOptions& options, const tokenizer::Tokenizer& tokenizer,
                         Sample& sample) {
  const std::string full = chat_template.render(messages, options);
  // Character ranges of the assistant turns: the prefix rendered with the generation prompt
  // ends where the turn starts; the prefix including the turn ends where it ends.
  std::vector<std::pair<size_t, size_t>> turns;
  tokenizer::ChatTemplateOptions prompt_options = options;
  prompt_options.add_generation_prompt = true;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].value("role", "") != "assistant") continue;
    const nlohmann::json before(messages.begin(), messages.begin() + std::ptrdiff_t(i));
    const nlohmann::json through(messages.begin(), messages.begin() + std::ptrdiff_t(i + 1));
    const std::string start = chat_template.render(before, prompt_options);
    const std::string end = chat_template.render(through, options);
    if (!starts_with(end, start) || !starts_with(full, end))
      throw Error(
          "the chat template does not render conversation prefixes as prefixes; cannot find the assistant "
          "tokens");
    if (!turns.empty() && start.size() < turns.back().second)
      throw Error("assistant turns overlap in the rendered conversation");
    turns.emplace_back(start.size(), end.size());
  }
  // Encode segment by segment so that the mask boundaries fall exactly between tokens.
  auto append = [&](size_t begin, size_t end, uint8_t mask) {
    if (end <= begin) return;
    std::vector<int32_t> ids = tokenizer.encode(std::string_view(full).substr(begin, end - begin), false);
    sample.tokens.insert(sample.tokens.end(), ids.begin(), ids.end());
    sample.mask.insert(sample.mask.end(), ids.size(), mask);
  };
  // Every sample starts with BOS (as plain-text documents do) unless the template writes it.
  const auto bos = tokenizer.bos_id();
  if (bos && !(options.bos_token.size() > 0 && starts_with(full, options.bos_token))) {
    sample.tokens.push_back(*bos);
    sample.mask.push_back(0);
  }
  size_t cursor = 0;
  for (const auto& [begin, end] : turns) {
    append(cursor, begin, 0);
    append(begin, end, 1);
    cursor = end;
  }
  append(cursor, full.size(), 0);
  return true;
}

}  // namespace

std::vector<Sample> load_chat_samples(const std::string& text, const tokenizer::Tokenizer& tokenizer,
                                      DataStats& stats) {
  if (tokenizer.chat_template().empty())
    throw Error(
        "chat data needs the tokenizer's chat template (tokenizer_config.json \"chat_template\"), and this "
        "model has none; use plain text (--data-format text) or add a template");
  const tokenizer::ChatTemplate chat_template(tokenizer.chat_template());
  tokenizer::ChatTemplateOptions options;
  options.bos_token = tokenizer.bos_token();
  options.eos_token = tokenizer.eos_token();
  options.date = "26 Jul 2024";  // strftime_now(): fixed so that the data is reproducible
  std::vector<Sample> samples;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string_view line(text.data() + start, end - start);
    start = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    if (tokenizer::find_invalid_utf8(line) != std::string::npos) {
      ++stats.skipped_invalid_utf8;
      continue;
    }
    const nlohmann::json object = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!object.is_object() || !object.contains("messages") || !object["messages"].is_array() ||
        object["messages"].empty()) {
      ++stats.skipped_bad_json;
      continue;
    }
    const nlohmann::json& messages = object["messages"];
    bool valid = true, has_assistant = false;
    for (const auto& message : messages) {
      if (!message.is_object() || !message.contains("role") || !message["role"].is_string())
        valid = false;
      else if (message["role"] == "assistant")
        has_assistant = true;
    }
    if (!valid) {
      ++stats.skipped_bad_json;
      continue;
    }
    if (!has_assistant) {
      ++stats.skipped_no_assistant;
      continue;
    }
    Sample sample;
    try {
      render_conversation(messages, chat_template, options, tokenizer, sample);
    } catch (const Error&) {
      ++stats.skipped_template_errors;
      continue;
    }
    if (!sample.tokens.empty()) samples.push_back(std::move(sample));
  }
  return samples;
}

}  // namespace swiftkv::train
