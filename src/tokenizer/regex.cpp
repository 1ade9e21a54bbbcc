#include "tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "common/error.h"

namespace swiftkv::tokenizer {

struct Regex::Compiled {
  pcre2_code* code = nullptr;  // null for a literal pattern (plain substring search)
  bool jit = false;
  std::string pattern;
  ~Compiled() {
    if (code) pcre2_code_free(code);
  }
};

Regex::Regex(const std::string& pattern, bool literal) : compiled_(std::make_unique<Compiled>()) {
  compiled_->pattern = pattern;
  if (literal) {
    if (pattern.empty()) throw Error("tokenizer.json: a String pattern is empty");
    return;
  }
  int error_code;
  PCRE2_SIZE error_offset;
  // UCP makes \s, \w, \d and [[:classes:]] Unicode-aware, like the Oniguruma regexes of
  // Hugging Face's tokenizers.
  uint32_t options = PCRE2_UTF | PCRE2_UCP;
  compiled_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options,
                                  &error_code, &error_offset, nullptr);
  if (!compiled_->code) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error_code, message, sizeof(message));
    throw Error("tokenizer regex /" + pattern + "/ does not compile at offset " +
                std::to_string(error_offset) + ": " + reinterpret_cast<const char*>(message));
  }
  // JIT is an optimisation only: without it (unsupported CPU, or a build without JIT)
  // the interpreter gives the same matches.
  compiled_->jit = pcre2_jit_compile(compiled_->code, PCRE2_JIT_COMPLETE) == 0;
}

// {"String": "..."} or {"Regex": "..."}, used by Replace normalizers/decoders and Split.
Regex make_pattern(const nlohmann::json& pattern) {
  if (pattern.contains("String")) return Regex(pattern["String"].get<std::string>(), /*literal=*/true);
  if (pattern.contains("Regex")) return Regex(pattern["Regex"].get<std::string>(), /*literal=*/false);
  throw Error("tokenizer.json: pattern " + pattern.dump() +
              " is neither {\"String\": ...} nor {\"Regex\": ...}");
}

Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;
Regex::~Regex() = default;

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> matches;
  if (!compiled_->code) {
    const std::string& literal = compiled_->pattern;
    for (size_t pos = text.find(literal); pos != std::string_view::npos;
         pos = text.find(literal, pos + literal.size()))
      matches.emplace_back(pos, pos + literal.size());
    return matches;
  }
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> match_data(
      pcre2_match_data_create_from_pattern(compiled_->code, nullptr), &pcre2_match_data_free);
  // Patterns like \s+(?!\S) on long whitespace runs can outgrow JIT's default 32 KiB stack.
  std::unique_ptr<pcre2_match_context, decltype(&pcre2_match_context_free)> context(
      pcre2_match_context_create(nullptr), &pcre2_match_context_free);
  std::unique_ptr<pcre2_jit_stack, decltype(&pcre2_jit_stack_free)> jit_stack(nullptr, &pcre2_jit_stack_free);
  if (compiled_->jit) {
    jit_stack.reset(pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr));
    if (jit_stack) pcre2_jit_stack_assign(context.get(), nullptr, jit_stack.get());
  }
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t offset = 0;
  while (offset <= text.size()) {
    int rc = pcre2_match(compiled_->code, subject, text.size(), offset, PCRE2_NO_UTF_CHECK, match_data.get(),
                         context.get());
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(rc, message, sizeof(message));
      throw Error("tokenizer regex /" + compiled_->pattern + "/ failed at byte " + std::to_string(offset) +
                  ": " + reinterpret_cast<const char*>(message));
    }
    PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match_data.get());
    size_t begin = ovector[0], end = ovector[1];
    if (end > begin) {
      matches.emplace_back(begin, end);
      offset = end;
    } else {
      // An empty match: step over one whole character so we never split one.
      if (begin >= text.size()) break;
      offset = begin + 1;
      while (offset < text.size() && (static_cast<unsigned char>(text[offset]) & 0xC0) == 0x80) ++offset;
    }
  }
  return matches;
}

std::string Regex::replace_all(std::string_view text, std::string_view replacement) const {
  std::string out;
  size_t last = 0;
  for (auto [begin, end] : find_all(text)) {
    out.append(text.substr(last, begin - last));
    out.append(replacement);
    last = end;
  }
  out.append(text.substr(last));
  return out;
}

}  // namespace swiftkv::tokenizer
