// The tok512 tokenizer.json made by convert_llama2c_tokenizer, run through the generic
// Hugging Face BPE path, must tokenize exactly like llama2.c itself. The reference below is
// written straight from llama2.c's run.c `encode` (and reads tok512.bin on its own), so it
// shares no code with the tokenizer under test.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <map>

#include "tokenizer/tokenizer.h"
#include "tokenizer_test_util.h"

namespace swiftkv::tokenizer {
namespace {

struct Llama2cReference {
  std::vector<std::string> vocab;
  std::vector<float> scores;
  std::map<std::string, int> lookup;

  Llama2cReference() {
    std::string bytes = test::read_text(test::tok512_path());
    size_t offset = 4;  // max_token_length
    while (offset < bytes.size()) {
      float score;
      int32_t length;
      std::memcpy(&score, bytes.data() + offset, 4);
      std::memcpy(&length, bytes.data() + offset + 4, 4);
      offset += 8;
      vocab.push_back(bytes.substr(offset, length));
      scores.push_back(score);
      offset += length;
    }
    for (size_t id = 0; id < vocab.size(); ++id) lookup.emplace(vocab[id], static_cast<int>(id));
  }

  int find(const std::string& piece) const {
    auto it = lookup.find(piece);
    return it == lookup.end() ? -1 : it->second;
  }

  // run.c: BOS, dummy prefix " ", one token per UTF-8 character (bytes + 3 when absent),
  // then repeatedly merge the adjacent pair whose concatenation scores best (leftmost wins
  // ties because only a strictly better score replaces the best so far).
  std::vector<int> encode(const std::string& text) const {
    std::vector<int> tokens{1};
    if (!text.empty()) tokens.push_back(find(" "));
    for (size_t pos = 0; pos < text.size();) {
      size_t length = 1;
      while (pos + length < text.size() && (static_cast<unsigned char>(text[pos + length]) & 0xC0) == 0x80 &&
             length < 4)
        ++length;
      std::string character = text.substr(pos, length);
      int id = find(character);
      if (id >= 0) {
        tokens.push_back(id);
      } else {
        for (char c : character) tokens.push_back(static_cast<unsigned char>(c) + 3);
      }
      pos += length;
    }
    while (true) {
      float best_score = -1e10f;
      int best_id = -1, best_index = -1;
      for (size_t i = 1; i + 1 < tokens.size(); ++i) {
        int id = find(vocab[tokens[i]] + vocab[tokens[i + 1]]);
        if (id != -1 && scores[id] > best_score) {
          best_score = scores[id];
          best_id = id;
          best_index = static_cast<int>(i);
        }
      }
      if (best_index == -1) break;
      tokens[best_index] = best_id;
      tokens.erase(tokens.begin() + best_index + 1);
    }
    return tokens;
  }
};

TEST(Llama2cEncode, EveryDevParagraphMatchesLlama2cAndDecodesBack) {
  Llama2cReference reference;
  const Tokenizer& tokenizer = test::tok512_tokenizer();
  std::vector<std::string> paragraphs = test::dev_paragraphs();
  ASSERT_GT(paragraphs.size(), 2900u);
  size_t mismatches = 0, tokens = 0;
  for (size_t i = 0; i < paragraphs.size(); ++i) {
    const std::string& paragraph = paragraphs[i];
    std::vector<int32_t> ids = tokenizer.encode(paragraph);
    std::vector<int> expected = reference.encode(paragraph);
    tokens += ids.size();
    if (std::vector<int>(ids.begin(), ids.end()) != expected && ++mismatches <= 3)
      ADD_FAILURE() << "paragraph " << i << " tokenizes differently from llama2.c:\n" << paragraph;
    ASSERT_EQ(tokenizer.decode(ids, /*skip_special_tokens=*/true), paragraph) << "paragraph " << i;
  }
  EXPECT_EQ(mismatches, 0u);
  // The NLL reference counts 259,418 predicted tokens after cutting each paragraph at 512;
  // uncut, the paragraphs hold at least that many.
  EXPECT_GE(tokens - paragraphs.size(), 259418u);
}

TEST(Llama2cEncode, WholeDevTextAsOneStringRoundTrips) {
  // Not a timed test (timings vary): prints the speed so a regression is visible.
  const Tokenizer& tokenizer = test::tok512_tokenizer();
  std::string text = test::read_text(swiftkv::testing::shared_dir() / "data/tinystories/tinystories_dev.txt");
  auto start = std::chrono::steady_clock::now();
  std::vector<int32_t> ids = tokenizer.encode(text, false);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("encoded %zu bytes into %zu tokens in %.3f s\n", text.size(), ids.size(), seconds);
  EXPECT_EQ(tokenizer.decode(ids), text);
}

TEST(Llama2cEncode, SpecialTokensInTextAndConfig) {
  const Tokenizer& tokenizer = test::tok512_tokenizer();
  EXPECT_EQ(tokenizer.bos_id(), 1);
  EXPECT_EQ(tokenizer.eos_ids(), std::vector<int32_t>{2});
  EXPECT_EQ(tokenizer.vocab_size(), 512);
  EXPECT_TRUE(tokenizer.is_special(1));
  EXPECT_FALSE(tokenizer.is_special(300));
  EXPECT_EQ(tokenizer.encode(""), std::vector<int32_t>{1});
  EXPECT_TRUE(tokenizer.encode("", false).empty());
  // Hugging Face (legacy Llama-2): special tokens written in the text are tokens, and the
  // text after one is normalised on its own, so it gets its own "▁".
  std::vector<int32_t> ids = tokenizer.encode("hi</s>the", false);
  std::vector<int32_t> hi = tokenizer.encode("hi", false), the = tokenizer.encode("the", false);
  std::vector<int32_t> expected = hi;
  expected.push_back(2);
  expected.insert(expected.end(), the.begin(), the.end());
  EXPECT_EQ(ids, expected);
  EXPECT_EQ(tokenizer.decode(ids), "hi</s> the");
  EXPECT_EQ(tokenizer.decode(ids, /*skip_special_tokens=*/true), "hi the");
  EXPECT_EQ(tokenizer.id_to_token(259), "\xE2\x96\x81t");
  EXPECT_EQ(tokenizer.token_to_id("<0x0A>"), 13);
}

}  // namespace
}  // namespace swiftkv::tokenizer
