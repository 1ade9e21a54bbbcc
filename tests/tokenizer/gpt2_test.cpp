// GPT-2 byte-level BPE against ids from an independent encoder (gpt-3-encoder, see
// ../shared/data/tokenizers/gpt2/README.md).
#include <gtest/gtest.h>

#include "tokenizer_test_util.h"

namespace swiftkv::tokenizer {
namespace {

TEST(Gpt2, EveryExpectedLineEncodesAndDecodes) {
  const Tokenizer& tokenizer = test::gpt2_tokenizer();
  auto lines = test::read_jsonl(swiftkv::testing::shared_dir() / "data/tokenizers/gpt2/expected.jsonl");
  ASSERT_EQ(lines.size(), 322u);
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string text = lines[i]["text"];
    std::vector<int32_t> expected = lines[i]["ids"];
    // GPT-2 adds no BOS either way.
    EXPECT_EQ(tokenizer.encode(text, true), expected) << "line " << i << ": " << text;
    EXPECT_EQ(tokenizer.encode(text, false), expected) << "line " << i;
    EXPECT_EQ(tokenizer.decode(expected), text) << "line " << i;
  }
}

TEST(Gpt2, EndOfTextIsOneSpecialToken) {
  const Tokenizer& tokenizer = test::gpt2_tokenizer();
  std::vector<int32_t> ids = tokenizer.encode("Hello<|endoftext|> world", false);
  EXPECT_EQ(ids, (std::vector<int32_t>{15496, 50256, 995}));
  EXPECT_EQ(tokenizer.decode(ids), "Hello<|endoftext|> world");
  EXPECT_EQ(tokenizer.decode(ids, true), "Hello world");
  EXPECT_EQ(tokenizer.eos_ids(), std::vector<int32_t>{50256});
  EXPECT_EQ(tokenizer.vocab_size(), 50257);
}

}  // namespace
}  // namespace swiftkv::tokenizer
