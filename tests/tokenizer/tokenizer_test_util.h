#pragma once
// Helpers shared by the tokenizer tests.
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "test_paths.h"
#include "tokenizer/llama2c_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace swiftkv::tokenizer::test {

inline std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

inline std::vector<nlohmann::json> read_jsonl(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

// tinystories_dev.txt split on blank lines, empty paragraphs skipped, nothing stripped (the
// scoring rule of the stories260K reference).
inline std::vector<std::string> dev_paragraphs() {
  std::string text = read_text(swiftkv::testing::shared_dir() / "data/tinystories/tinystories_dev.txt");
  std::vector<std::string> paragraphs;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find("\n\n", start);
    if (end == std::string::npos) end = text.size();
    if (end > start) paragraphs.push_back(text.substr(start, end - start));
    start = end + 2;
  }
  return paragraphs;
}

inline std::filesystem::path tok512_path() {
  return swiftkv::testing::shared_dir() / "data/stories260K/tok512.bin";
}

inline const Tokenizer& tok512_tokenizer() {
  static const Tokenizer tokenizer = [] {
    HfTokenizerFiles files = convert_llama2c_tokenizer(tok512_path());
    return Tokenizer::from_json(files.tokenizer_json, files.tokenizer_config_json);
  }();
  return tokenizer;
}

inline const Tokenizer& gpt2_tokenizer() {
  static const Tokenizer tokenizer =
      Tokenizer::from_dir(swiftkv::testing::shared_dir() / "data/tokenizers/gpt2");
  return tokenizer;
}

}  // namespace swiftkv::tokenizer::test
