#include "tokenizer/tokenizer.h"

#include <cstdio>

#include "common/error.h"
#include "common/files.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/utf8.h"

namespace swiftkv::tokenizer {
namespace {

// bos_token / eos_token: a string, {"content": ...} (AddedToken form) or null.
std::string token_string(const nlohmann::json& config, const char* key) {
  if (config.is_null() || !config.contains(key)) return "";
  const nlohmann::json& value = config[key];
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object() && value.contains("content")) return value["content"].get<std::string>();
  return "";
}

// chat_template: a string, or a list of {"name", "template"} of which "default" is kept.
std::string chat_template_of(const nlohmann::json& config) {
  if (config.is_null() || !config.contains("chat_template")) return "";
  const nlohmann::json& value = config["chat_template"];
  if (value.is_string()) return value.get<std::string>();
  if (value.is_array()) {
    for (const auto& entry : value)
      if (entry.value("name", "") == "default") return entry.value("template", "");
    if (!value.empty()) return value[0].value("template", "");
  }
  return "";
}

// The ids a post-processor puts before and after a single sequence.
void parse_post_processor(const nlohmann::json& spec, std::vector<int32_t>& prefix,
                          std::vector<int32_t>& suffix) {
  if (spec.is_null()) return;
  const std::string type = spec.value("type", "");
  if (type == "Sequence") {
    for (const auto& step : spec.at("processors")) parse_post_processor(step, prefix, suffix);
    return;
  }
  if (type == "ByteLevel") return;  // only adjusts offsets
  if (type == "TemplateProcessing") {
    const nlohmann::json& special_tokens = spec.value("special_tokens", nlohmann::json::object());
    bool after_sequence = false;
    for (const auto& item : spec.at("single")) {
      if (item.contains("Sequence")) {
        after_sequence = true;
        continue;
      }
      const std::string name = item.at("SpecialToken").at("id").get<std::string>();
      if (!special_tokens.contains(name))
        throw Error("tokenizer.json: TemplateProcessing uses \"" + name +
                    "\" but special_tokens does not list it");
      for (const auto& id : special_tokens[name].at("ids"))
        (after_sequence ? suffix : prefix).push_back(id.get<int32_t>());
    }
    return;
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    prefix.push_back(spec.at("cls").at(1).get<int32_t>());
    suffix.push_back(spec.at("sep").at(1).get<int32_t>());
    return;
  }
  throw Error("tokenizer.json: post_processor type \"" + type +
              "\" is not supported (supported: TemplateProcessing, ByteLevel, Sequence, RobertaProcessing, "
              "BertProcessing)");
}

}  // namespace

void Tokenizer::Impl::encode_text(std::string_view text, bool starts_text, std::vector<int32_t>& ids) const {
  std::vector<std::string> words{std::string(text)};
  if (pre_tokenizer) pre_tokenizer->split(words, starts_text);
  for (const std::string& word : words) model->encode_word(word, ids);
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_dir(const std::filesystem::path& model_dir) {
  std::filesystem::path tokenizer_path = model_dir / "tokenizer.json";
  if (!std::filesystem::exists(tokenizer_path))
    throw Error(model_dir.string() +
                " has no tokenizer.json (only Hugging Face tokenizer.json files are supported)");
  nlohmann::json tokenizer_json = read_json_file(tokenizer_path);
  nlohmann::json config;
  if (std::filesystem::exists(model_dir / "tokenizer_config.json"))
    config = read_json_file(model_dir / "tokenizer_config.json");
  // Newer Hugging Face repositories keep the chat template in its own file.
  std::filesystem::path template_path = model_dir / "chat_template.jinja";
  if (std::filesystem::exists(template_path) && (config.is_null() || !config.contains("chat_template"))) {
    if (config.is_null()) config = nlohmann::json::object();
    config["chat_template"] = read_text_file(template_path);
  }
  try {
    return from_json(tokenizer_json, config);
  } catch (const Error& e) {
    throw Error(tokenizer_path.string() + ": " + e.what());
  } catch (const nlohmann::json::exception& e) {
    throw Error(tokenizer_path.string() + " has an unexpected layout: " + e.what());
  }
}

Tokenizer Tokenizer::from_json(const nlohmann::json& tokenizer_json, const nlohmann::json& tokenizer_config) {
  auto impl = std::make_unique<Impl>();
  try {
    impl->model = std::make_unique<BpeModel>(tokenizer_json.at("model"));
    impl->normalizer = make_normalizer(tokenizer_json.value("normalizer", nlohmann::json()));
    impl->pre_tokenizer = make_pre_tokenizer(tokenizer_json.value("pre_tokenizer", nlohmann::json()));
    impl->decoder = make_decoder(tokenizer_json.value("decoder", nlohmann::json()));
    impl->added = std::make_unique<AddedVocabulary>(tokenizer_json.value("added_tokens", nlohmann::json()));
    parse_post_processor(tokenizer_json.value("post_processor", nlohmann::json()), impl->prefix_ids,
                         impl->suffix_ids);
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("tokenizer.json has an unexpected layout: ") + e.what());
  }

  impl->id_to_token = impl->model->id_to_token();
  for (const AddedToken& token : impl->added->tokens()) {
    if (static_cast<size_t>(token.id) >= impl->id_to_token.size()) impl->id_to_token.resize(token.id + 1);
    impl->id_to_token[token.id] = token.content;
    impl->added_ids[token.content] = token.id;
  }
  impl->special.assign(impl->id_to_token.size(), false);
  for (const AddedToken& token : impl->added->tokens()) impl->special[token.id] = token.special;

  const nlohmann::json& config = tokenizer_config;
  impl->bos_token = token_string(config, "bos_token");
  impl->eos_token = token_string(config, "eos_token");
  impl->chat_template = chat_template_of(config);

  Tokenizer tokenizer(std::move(impl));
  Impl& parts = *tokenizer.impl_;
  // Llama-family tokenizer classes rebuild the template from add_bos_token / add_eos_token
  // (transformers' LlamaTokenizerFast.update_post_processor); honour them when present.
  auto adjust = [&](const char* key, const std::string& token, std::vector<int32_t>& ids, bool at_front) {
    if (config.is_null() || !config.contains(key) || !config[key].is_boolean() || token.empty()) return;
    std::optional<int32_t> id = tokenizer.token_to_id(token);
    if (!id) return;
    bool present = !ids.empty() && (at_front ? ids.front() : ids.back()) == *id;
    if (config[key].get<bool>() && !present) ids.insert(at_front ? ids.begin() : ids.end(), *id);
    if (!config[key].get<bool>() && present) ids.erase(at_front ? ids.begin() : ids.end() - 1);
  };
  adjust("add_bos_token", parts.bos_token, parts.prefix_ids, true);
  adjust("add_eos_token", parts.eos_token, parts.suffix_ids, false);
  for (int32_t id : parts.prefix_ids)
    if (id < 0 || id >= tokenizer.vocab_size())
      throw Error("tokenizer.json: post-processor adds token id " + std::to_string(id) +
                  " outside the vocabulary");
  return tokenizer;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  if (size_t bad = find_invalid_utf8(text); bad != std::string_view::npos) {
    char byte[8];
    std::snprintf(byte, sizeof(byte), "0x%02X", static_cast<unsigned char>(text[bad]));
    throw Error("input text is not valid UTF-8: byte " + std::string(byte) + " at offset " +
                std::to_string(bad) + " does not begin or continue a valid character");
  }
  const Impl& parts = *impl_;
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 8);
  if (add_special_tokens) ids = parts.prefix_ids;
  // Added tokens are found in the raw text first; the rest is normalised piece by piece
  // (so Llama-2's Prepend("▁") applies after every special token, as in Hugging Face).
  for (const Segment& segment : parts.added->split(text, /*normalized=*/false)) {
    if (segment.token_id >= 0) {
      ids.push_back(segment.token_id);
      continue;
    }
    std::string piece(text.substr(segment.begin, segment.end - segment.begin));
    bool starts_text = segment.begin == 0;
    if (parts.normalizer) piece = parts.normalizer->normalize(std::move(piece));
    if (!parts.added->has_normalized_tokens()) {
      parts.encode_text(piece, starts_text, ids);
      continue;
    }
    for (const Segment& inner : parts.added->split(piece, /*normalized=*/true)) {
      if (inner.token_id >= 0)
        ids.push_back(inner.token_id);
      else
        parts.encode_text(std::string_view(piece).substr(inner.begin, inner.end - inner.begin),
                          starts_text && inner.begin == 0, ids);
    }
  }
  if (add_special_tokens) ids.insert(ids.end(), parts.suffix_ids.begin(), parts.suffix_ids.end());
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  const Impl& parts = *impl_;
  std::vector<std::string> pieces;
  pieces.reserve(ids.size());
  for (int32_t id : ids) {
    // Ids the tokenizer does not have decode to nothing, as in Hugging Face: models pad their
    // logits past the vocabulary (Qwen2.5: 151936 logits, 151665 tokens) and may sample them.
    if (id < 0 || id >= vocab_size() || parts.id_to_token[id].empty()) continue;
    if (skip_special_tokens && parts.special[id]) continue;
    pieces.push_back(parts.id_to_token[id]);
  }
  return run_decoder(parts.decoder.get(), std::move(pieces));
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->id_to_token.size()); }

std::optional<int32_t> Tokenizer::bos_id() const {
  if (impl_->bos_token.empty()) return std::nullopt;
  return token_to_id(impl_->bos_token);
}

std::vector<int32_t> Tokenizer::eos_ids() const {
  if (impl_->eos_token.empty()) return {};
  if (auto id = token_to_id(impl_->eos_token)) return {*id};
  return {};
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  if (auto it = impl_->added_ids.find(token); it != impl_->added_ids.end()) return it->second;
  if (auto it = impl_->model->vocab().find(token); it != impl_->model->vocab().end()) return it->second;
  return std::nullopt;
}

std::string Tokenizer::id_to_token(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return "";
  return impl_->id_to_token[id];
}

bool Tokenizer::is_special(int32_t id) const { return id >= 0 && id < vocab_size() && impl_->special[id]; }
const std::string& Tokenizer::chat_template() const { return impl_->chat_template; }
std::string Tokenizer::bos_token() const { return impl_->bos_token; }
std::string Tokenizer::eos_token() const { return impl_->eos_token; }

}  // namespace swiftkv::tokenizer
