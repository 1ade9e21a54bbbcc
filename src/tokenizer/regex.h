#pragma once
// A PCRE2 regex compiled once (UTF + Unicode properties, JIT when available) and shared by
// every thread: matching allocates its own match data, the compiled code is read-only.
#include <cstddef>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace swiftkv::tokenizer {

class Regex {
 public:
  // literal: match `pattern` as plain text (tokenizer.json's {"String": ...} patterns).
  Regex(const std::string& pattern, bool literal);
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;
  ~Regex();

  // Non-overlapping matches [begin, end) from left to right (empty matches skipped). `text`
  // must be valid UTF-8 (not re-checked here).
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;
  // Replaces every match with `replacement` (taken literally).
  std::string replace_all(std::string_view text, std::string_view replacement) const;

 private:
  struct Compiled;
  std::unique_ptr<Compiled> compiled_;
};

// tokenizer.json patterns: {"String": "..."} (literal) or {"Regex": "..."}.
Regex make_pattern(const nlohmann::json& pattern);

}  // namespace swiftkv::tokenizer
