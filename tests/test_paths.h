#pragma once
// Where tests find ../shared data and their own fixtures (set by CMake).
#include <filesystem>

namespace swiftkv::testing {

inline std::filesystem::path shared_dir() { return SWIFTKV_SHARED_DIR; }
inline std::filesystem::path fixtures_dir() { return SWIFTKV_FIXTURES_DIR; }
inline std::filesystem::path swiftkv_binary() { return SWIFTKV_BINARY; }
// A fresh, empty directory under the system temp dir for one test.
inline std::filesystem::path fresh_temp_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("swiftkv_test_" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace swiftkv::testing
