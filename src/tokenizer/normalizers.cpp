#include "tokenizer/normalizers.h"

#include <vector>

#include "common/error.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode_nfc.h"

namespace swiftkv::tokenizer {
namespace {

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps) : steps_(std::move(steps)) {}
  std::string normalize(std::string text) const override {
    for (const auto& step : steps_) text = step->normalize(std::move(text));
    return text;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  // Hugging Face prepends only to non-empty text.
  std::string normalize(std::string text) const override { return text.empty() ? text : prefix_ + text; }

 private:
  std::string prefix_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(Regex pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  std::string normalize(std::string text) const override { return pattern_.replace_all(text, content_); }

 private:
  Regex pattern_;
  std::string content_;
};

class NfcNormalizer : public Normalizer {
 public:
  std::string normalize(std::string text) const override { return to_nfc(text); }
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& spec) {
  if (spec.is_null()) return nullptr;
  const std::string type = spec.value("type", "");
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Normalizer>> steps;
    for (const auto& step : spec.at("normalizers"))
      if (auto normalizer = make_normalizer(step)) steps.push_back(std::move(normalizer));
    return std::make_unique<SequenceNormalizer>(std::move(steps));
  }
  if (type == "Prepend") return std::make_unique<PrependNormalizer>(spec.at("prepend").get<std::string>());
  if (type == "Replace")
    return std::make_unique<ReplaceNormalizer>(make_pattern(spec.at("pattern")),
                                               spec.at("content").get<std::string>());
  if (type == "NFC") return std::make_unique<NfcNormalizer>();
  throw Error("tokenizer.json: normalizer type \"" + type +
              "\" is not supported (supported: Sequence, Prepend, Replace, NFC)");
}

}  // namespace swiftkv::tokenizer
