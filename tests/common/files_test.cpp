#include "common/files.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/error.h"

namespace swiftkv {
namespace {

std::filesystem::path fresh_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("swiftkv_common_" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

TEST(Files, JsonRoundTripLeavesNoTemporaryFile) {
  auto dir = fresh_dir("roundtrip");
  write_json_file(dir / "a.json", {{"x", 1}});
  EXPECT_EQ(read_json_file(dir / "a.json")["x"], 1);
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 1);
}

TEST(Files, FailedWriteKeepsOldFile) {
  auto dir = fresh_dir("failed");
  write_json_file(dir / "a.json", {{"x", 1}});
  EXPECT_THROW(write_file_atomically(dir / "a.json", [](int) { throw Error("disk full"); }), Error);
  EXPECT_EQ(read_json_file(dir / "a.json")["x"], 1);
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 1);
}

TEST(Files, BrokenJsonNamesTheFile) {
  auto dir = fresh_dir("broken");
  std::ofstream(dir / "config.json") << "{\"a\": ";
  try {
    read_json_file(dir / "config.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("config.json is not valid JSON"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace swiftkv
