// StreamDecoder never emits half a character, holds incomplete sequences, turns bytes that
// can never complete into U+FFFD, and its concatenated output equals decode(all ids).
#include <gtest/gtest.h>

#include "common/error.h"
#include "tokenizer_test_util.h"

namespace swiftkv::tokenizer {
namespace {

const std::string kReplacement = "\xEF\xBF\xBD";

struct Streamed {
  std::vector<std::string> chunks;  // one per push, then finish()
  std::string text;
};

Streamed stream(const Tokenizer& tokenizer, const std::vector<int32_t>& ids, bool skip_special = false) {
  StreamDecoder decoder(tokenizer, skip_special);
  Streamed out;
  for (int32_t id : ids) out.chunks.push_back(decoder.push(id));
  out.chunks.push_back(decoder.finish());
  for (const auto& chunk : out.chunks) out.text += chunk;
  return out;
}

void expect_whole_characters(const Streamed& streamed) {
  for (size_t i = 0; i < streamed.chunks.size(); ++i)
    EXPECT_EQ(find_invalid_utf8(streamed.chunks[i]), std::string::npos)
        << "chunk " << i << " splits a character";
}

int32_t byte_token(int byte) { return 3 + byte; }  // tok512: <0x00> is id 3

TEST(StreamDecoder, ByteFallbackCharactersAreEmittedWhole) {
  const Tokenizer& tokenizer = test::tok512_tokenizer();
  // None of these characters is in tok512's 512 pieces: they become 2-4 byte tokens each.
  std::string text = "Lily saw \xE4\xB8\x96\xE7\x95\x8C and \xF0\x9F\x99\x82 caf\xC3\xA9!";
  std::vector<int32_t> ids = tokenizer.encode(text);
  Streamed streamed = stream(tokenizer, ids);
  expect_whole_characters(streamed);
  EXPECT_EQ(streamed.text, tokenizer.decode(ids));
  EXPECT_EQ(tokenizer.decode(ids, true), text);
  EXPECT_EQ(streamed.text.find(kReplacement), std::string::npos);
  // The emoji's four byte tokens: nothing comes out until the last one arrives.
  std::vector<int32_t> emoji{byte_token(0xF0), byte_token(0x9F), byte_token(0x99), byte_token(0x82)};
  StreamDecoder decoder(tokenizer);
  std::string hi;
  for (int32_t id : tokenizer.encode("Hi", false)) hi += decoder.push(id);
  EXPECT_EQ(hi, "Hi");
  EXPECT_EQ(decoder.push(emoji[0]), "");
  EXPECT_EQ(decoder.push(emoji[1]), "");
  EXPECT_EQ(decoder.push(emoji[2]), "");
  EXPECT_EQ(decoder.push(emoji[3]), "\xF0\x9F\x99\x82");
  EXPECT_EQ(decoder.finish(), "");
}

TEST(StreamDecoder, BytesThatCannotCompleteBecomeReplacementCharacters) {
  const Tokenizer& tokenizer = test::tok512_tokenizer();
  int32_t the = tokenizer.encode("the", false)[0];
  // A lead byte followed by a word, a stray continuation byte, an invalid byte, and a
  // sequence left unfinished at the end of the stream.
  std::vector<int32_t> ids{the,
                           byte_token(0xE4),
                           byte_token(0xB8),
                           the,
                           byte_token(0x80),
                           the,
                           byte_token(0xFF),
                           byte_token(0x41),
                           byte_token(0xF0),
                           byte_token(0x9F)};
  Streamed streamed = stream(tokenizer, ids);
  expect_whole_characters(streamed);
  EXPECT_EQ(streamed.text, tokenizer.decode(ids));
  EXPECT_EQ(streamed.text, "the" + kReplacement + kReplacement + " the" + kReplacement + " the" +
                               kReplacement + "A" + kReplacement + kReplacement);
  // The unfinished tail is held until finish().
  EXPECT_EQ(streamed.chunks[streamed.chunks.size() - 2], "");
  EXPECT_EQ(streamed.chunks.back(), kReplacement + kReplacement);
}

TEST(StreamDecoder, ByteLevelMatchesDecodeOnEveryGpt2Line) {
  const Tokenizer& tokenizer = test::gpt2_tokenizer();
  for (const auto& line :
       test::read_jsonl(swiftkv::testing::shared_dir() / "data/tokenizers/gpt2/expected.jsonl")) {
    std::vector<int32_t> ids = line["ids"];
    Streamed streamed = stream(tokenizer, ids);
    expect_whole_characters(streamed);
    ASSERT_EQ(streamed.text, line["text"].get<std::string>());
  }
  // An emoji split across byte-level tokens, then cut short: U+FFFD only at the end.
  std::vector<int32_t> emoji = tokenizer.encode("\xF0\x9F\x99\x82");
  ASSERT_GT(emoji.size(), 1u);
  std::vector<int32_t> cut(emoji.begin(), emoji.end() - 1);
  Streamed streamed = stream(tokenizer, cut);
  EXPECT_EQ(streamed.text, kReplacement);
  EXPECT_EQ(streamed.text, tokenizer.decode(cut));
}

TEST(StreamDecoder, LongStreamEqualsDecodeWithAndWithoutSpecials) {
  // The whole dev text as one stream of stories, each opened with BOS: checks the windowing
  // over ~270k tokens (a quadratic decoder would not finish) and SentencePiece's strip.
  const Tokenizer& tokenizer = test::tok512_tokenizer();
  std::vector<int32_t> ids;
  for (const std::string& paragraph : test::dev_paragraphs()) {
    std::vector<int32_t> paragraph_ids = tokenizer.encode(paragraph);
    ids.insert(ids.end(), paragraph_ids.begin(), paragraph_ids.end());
  }
  for (bool skip_special : {false, true}) {
    Streamed streamed = stream(tokenizer, ids, skip_special);
    expect_whole_characters(streamed);
    EXPECT_EQ(streamed.text, tokenizer.decode(ids, skip_special)) << "skip_special_tokens " << skip_special;
  }
}

// Models may sample ids past the tokenizer's vocabulary (padded logits): they decode to
// nothing, as in Hugging Face, and never stop a stream.
TEST(StreamDecoder, IdsOutsideTheVocabularyDecodeToNothing) {
  const Tokenizer& tokenizer = test::tok512_tokenizer();
  StreamDecoder decoder(tokenizer);
  std::string text;
  for (int32_t id : tokenizer.encode("Hi", false)) text += decoder.push(id);
  EXPECT_EQ(decoder.push(512), "");
  EXPECT_EQ(decoder.push(-1), "");
  text += decoder.finish();
  EXPECT_EQ(text, "Hi");
  EXPECT_EQ(tokenizer.decode({-1, 512, 100000}), "");
}

}  // namespace
}  // namespace swiftkv::tokenizer

namespace swiftkv::tokenizer {
namespace {

// What a user sees: the prompt, then the streamed completion, must read as decode(prompt +
// completion) — the space before the first generated word included.
TEST(StreamDecoder, PrimedWithThePromptKeepsTheSpaceBeforeTheFirstWord) {
  const Tokenizer& tokenizer = test::tok512_tokenizer();
  const std::string prompt_text = "Once upon a time, there was";
  for (const std::string completion : {" a little girl", " Lily", "!"}) {
    std::vector<int32_t> prompt = tokenizer.encode(prompt_text);
    std::vector<int32_t> all = tokenizer.encode(prompt_text + completion);
    ASSERT_TRUE(std::equal(prompt.begin(), prompt.end(), all.begin())) << completion;
    StreamDecoder decoder(tokenizer, /*skip_special_tokens=*/true);
    decoder.prime(prompt);
    std::string streamed;
    for (size_t i = prompt.size(); i < all.size(); ++i) streamed += decoder.push(all[i]);
    streamed += decoder.finish();
    EXPECT_EQ(prompt_text + streamed, tokenizer.decode(all, /*skip_special_tokens=*/true));
    EXPECT_EQ(streamed, completion);
  }
}

}  // namespace
}  // namespace swiftkv::tokenizer
