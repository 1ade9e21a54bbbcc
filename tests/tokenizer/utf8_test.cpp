// Input text must be valid UTF-8: invalid input is refused with the byte offset.
#include <gtest/gtest.h>

#include "common/error.h"
#include "tokenizer_test_util.h"

namespace swiftkv::tokenizer {
namespace {

TEST(Utf8, FindsTheFirstInvalidByte) {
  EXPECT_EQ(find_invalid_utf8("plain"), std::string::npos);
  EXPECT_EQ(find_invalid_utf8("caf\xC3\xA9 \xF0\x9F\x99\x82 \xE4\xB8\x96"), std::string::npos);
  EXPECT_EQ(find_invalid_utf8("ab\xC3("), 2u);             // lead byte without continuation
  EXPECT_EQ(find_invalid_utf8("a\x80"), 1u);               // stray continuation byte
  EXPECT_EQ(find_invalid_utf8("\xC0\xAF"), 0u);            // overlong '/'
  EXPECT_EQ(find_invalid_utf8("x\xED\xA0\x80"), 1u);       // UTF-16 surrogate
  EXPECT_EQ(find_invalid_utf8("xy\xF4\x90\x80\x80"), 2u);  // above U+10FFFF
  EXPECT_EQ(find_invalid_utf8("abc\xE2\x82"), 3u);         // truncated at the end
  EXPECT_EQ(find_invalid_utf8(std::string("a\0b", 3)), std::string::npos);
}

TEST(Utf8, SanitizeReplacesMaximalInvalidSubparts) {
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(sanitize_utf8("ok \xC3\xA9"), "ok \xC3\xA9");
  EXPECT_EQ(sanitize_utf8("a\xE2\x82"
                          "b"),
            "a" + r + "b");  // one U+FFFD for the unfinished sequence
  EXPECT_EQ(sanitize_utf8("\x80\x80"), r + r);
  EXPECT_EQ(sanitize_utf8("\xF0\x9F\x99"), r);
}

TEST(Utf8, EncodeRefusesInvalidInputNamingTheOffset) {
  for (const Tokenizer* tokenizer : {&test::tok512_tokenizer(), &test::gpt2_tokenizer()}) {
    try {
      tokenizer->encode("Once upon a time\xFF there", true);
      FAIL() << "invalid UTF-8 was accepted";
    } catch (const Error& e) {
      std::string message = e.what();
      EXPECT_NE(message.find("not valid UTF-8"), std::string::npos) << message;
      EXPECT_NE(message.find("0xFF at offset 16"), std::string::npos) << message;
    }
    EXPECT_THROW(tokenizer->encode("truncated \xE4\xB8"), Error);
  }
}

}  // namespace
}  // namespace swiftkv::tokenizer
