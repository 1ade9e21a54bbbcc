#include "tokenizer/pre_tokenizers.h"

#include "common/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/regex.h"

namespace swiftkv::tokenizer {

const char* const kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

namespace {

// What happens to the matched delimiters (Hugging Face's SplitDelimiterBehavior).
enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

Behavior parse_behavior(const std::string& name) {
  if (name == "Removed") return Behavior::kRemoved;
  if (name == "Isolated") return Behavior::kIsolated;
  if (name == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return Behavior::kMergedWithNext;
  if (name == "Contiguous") return Behavior::kContiguous;
  throw Error("tokenizer.json: Split behavior \"" + name + "\" is unknown");
}

// Splits `word` at the matches of `regex` (or, inverted, at the text between them).
void split_word(const std::string& word, const Regex& regex, Behavior behavior, bool invert,
                std::vector<std::string>& out) {
  struct Span {
    size_t begin, end;
    bool is_match;
  };
  std::vector<Span> spans;
  size_t last = 0;
  for (auto [begin, end] : regex.find_all(word)) {
    if (begin > last) spans.push_back({last, begin, invert});
    spans.push_back({begin, end, !invert});
    last = end;
  }
  if (last < word.size()) spans.push_back({last, word.size(), invert});

  std::vector<std::pair<size_t, size_t>> pieces;
  bool previous_was_match = false;
  for (size_t i = 0; i < spans.size(); ++i) {
    const Span& span = spans[i];
    switch (behavior) {
      case Behavior::kRemoved:
        if (!span.is_match) pieces.emplace_back(span.begin, span.end);
        break;
      case Behavior::kIsolated:
        pieces.emplace_back(span.begin, span.end);
        break;
      case Behavior::kMergedWithPrevious:
        if (span.is_match && !pieces.empty() && !previous_was_match)
          pieces.back().second = span.end;
        else
          pieces.emplace_back(span.begin, span.end);
        break;
      case Behavior::kMergedWithNext:
        if (!span.is_match && previous_was_match && !pieces.empty())
          pieces.back().second = span.end;
        else
          pieces.emplace_back(span.begin, span.end);
        break;
      case Behavior::kContiguous:
        if (span.is_match && previous_was_match && !pieces.empty())
          pieces.back().second = span.end;
        else
          pieces.emplace_back(span.begin, span.end);
        break;
    }
    previous_was_match = span.is_match;
  }
  for (auto [begin, end] : pieces)
    if (end > begin) out.push_back(word.substr(begin, end - begin));
}

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps)
      : steps_(std::move(steps)) {}
  void split(std::vector<std::string>& words, bool starts_text) const override {
    for (const auto& step : steps_) step->split(words, starts_text);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(Regex regex, Behavior behavior, bool invert)
      : regex_(std::move(regex)), behavior_(behavior), invert_(invert) {}
  void split(std::vector<std::string>& words, bool) const override {
    std::vector<std::string> out;
    for (const auto& word : words) split_word(word, regex_, behavior_, invert_, out);
    words = std::move(out);
  }

 private:
  Regex regex_;
  Behavior behavior_;
  bool invert_;
};

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex) : add_prefix_space_(add_prefix_space) {
    if (use_regex) regex_.emplace(kGpt2Pattern, /*literal=*/false);
  }
  void split(std::vector<std::string>& words, bool) const override {
    std::vector<std::string> out;
    for (auto& word : words) {
      // Hugging Face adds the space to every piece this step sees, not only the first.
      if (add_prefix_space_ && (word.empty() || word[0] != ' ')) word.insert(word.begin(), ' ');
      if (regex_)
        split_word(word, *regex_, Behavior::kIsolated, false, out);
      else
        out.push_back(std::move(word));
    }
    for (auto& word : out) word = bytes_to_byte_level(word);
    words = std::move(out);
  }

 private:
  bool add_prefix_space_;
  std::optional<Regex> regex_;
};

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  enum class Prepend { kAlways, kFirst, kNever };
  MetaspacePreTokenizer(std::string replacement, Prepend prepend, bool split)
      : replacement_(std::move(replacement)), prepend_(prepend), split_(split), space_(" ", true) {}
  void split(std::vector<std::string>& words, bool starts_text) const override {
    std::vector<std::string> out;
    for (size_t i = 0; i < words.size(); ++i) {
      std::string word = space_.replace_all(words[i], replacement_);
      bool prepend = prepend_ == Prepend::kAlways || (prepend_ == Prepend::kFirst && starts_text && i == 0);
      if (prepend && word.compare(0, replacement_.size(), replacement_) != 0) word = replacement_ + word;
      if (!split_) {
        out.push_back(std::move(word));
        continue;
      }
      // Each word starts at a replacement character (SentencePiece's "▁word" pieces).
      size_t start = 0;
      for (size_t pos = word.find(replacement_, 1); pos != std::string::npos;
           pos = word.find(replacement_, pos + replacement_.size())) {
        out.push_back(word.substr(start, pos - start));
        start = pos;
      }
      if (start < word.size()) out.push_back(word.substr(start));
    }
    words = std::move(out);
  }

 private:
  std::string replacement_;
  Prepend prepend_;
  bool split_;
  Regex space_;
};

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& spec) {
  if (spec.is_null()) return nullptr;
  const std::string type = spec.value("type", "");
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    for (const auto& step : spec.at("pretokenizers"))
      if (auto pre_tokenizer = make_pre_tokenizer(step)) steps.push_back(std::move(pre_tokenizer));
    return std::make_unique<SequencePreTokenizer>(std::move(steps));
  }
  if (type == "Split")
    return std::make_unique<SplitPreTokenizer>(make_pattern(spec.at("pattern")),
                                               parse_behavior(spec.at("behavior").get<std::string>()),
                                               spec.value("invert", false));
  if (type == "ByteLevel")
    return std::make_unique<ByteLevelPreTokenizer>(spec.value("add_prefix_space", false),
                                                   spec.value("use_regex", true));
  if (type == "Metaspace") {
    // Older files say add_prefix_space (true = "always"); newer ones prepend_scheme.
    auto prepend = spec.value("add_prefix_space", true) ? MetaspacePreTokenizer::Prepend::kAlways
                                                        : MetaspacePreTokenizer::Prepend::kNever;
    if (spec.contains("prepend_scheme")) {
      const std::string scheme = spec["prepend_scheme"].get<std::string>();
      if (scheme == "always")
        prepend = MetaspacePreTokenizer::Prepend::kAlways;
      else if (scheme == "first")
        prepend = MetaspacePreTokenizer::Prepend::kFirst;
      else if (scheme == "never")
        prepend = MetaspacePreTokenizer::Prepend::kNever;
      else
        throw Error("tokenizer.json: Metaspace prepend_scheme \"" + scheme + "\" is unknown");
    }
    return std::make_unique<MetaspacePreTokenizer>(spec.value("replacement", "\xE2\x96\x81"), prepend,
                                                   spec.value("split", true));
  }
  throw Error("tokenizer.json: pre_tokenizer type \"" + type +
              "\" is not supported (supported: Sequence, Split, ByteLevel, Metaspace)");
}

}  // namespace swiftkv::tokenizer
