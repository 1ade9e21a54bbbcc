#include "common/byte_size.h"

#include <gtest/gtest.h>

#include "expect_error.h"

namespace swiftkv {
namespace {

TEST(ByteSize, BinaryDecimalAndPlainUnits) {
  EXPECT_EQ(parse_byte_size("4GiB", "--x"), int64_t{4} << 30);
  EXPECT_EQ(parse_byte_size("512MiB", "--x"), int64_t{512} << 20);
  EXPECT_EQ(parse_byte_size("1.5G", "--x"), int64_t{3} << 29);
  EXPECT_EQ(parse_byte_size("2k", "--x"), 2048);
  EXPECT_EQ(parse_byte_size("8GB", "--x"), int64_t{8'000'000'000});
  EXPECT_EQ(parse_byte_size("3 mb", "--x"), 3'000'000);
  EXPECT_EQ(parse_byte_size("123", "--x"), 123);
  EXPECT_EQ(parse_byte_size("77B", "--x"), 77);
  EXPECT_EQ(parse_byte_size("1TiB", "--x"), int64_t{1} << 40);
}

TEST(ByteSize, RefusesWhatIsNotASize) {
  for (const char* text : {"", "GiB", "-1GiB", "4XB", "4 GiBs", "nan", "1e30", "4  GiB"})
    testing::expect_error([&] { parse_byte_size(text, "--kv-cache-memory"); }, {"--kv-cache-memory", text});
}

}  // namespace
}  // namespace swiftkv
