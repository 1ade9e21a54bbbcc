#pragma once
// Fixtures for the trainer's tests: stories260K imported and converted to SwiftKV (once per
// test program), a slice of the TinyStories dev text, and running the swiftkv binary.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "io/convert.h"
#include "io/llama2c.h"
#include "io/safetensors.h"
#include "test_paths.h"

namespace swiftkv::testing {

// A fresh temp dir unique to this process (ctest runs tests of several build trees and the
// tests of one program concurrently).
inline std::filesystem::path train_temp_dir(const std::string& name) {
  return fresh_temp_dir(name + "_" + std::to_string(::getpid()));
}

// stories260K (L = 5) as SwiftKV with M, G; built once per process under the temp dir.
inline std::filesystem::path stories_swiftkv(int64_t swiftkv_layers, int64_t group_size = 1) {
  const auto root =
      std::filesystem::temp_directory_path() / ("swiftkv_train_fixture_" + std::to_string(::getpid()));
  // Removed when the test program exits.
  static const struct Cleanup {
    std::filesystem::path root;
    ~Cleanup() {
      std::error_code ignored;
      std::filesystem::remove_all(root, ignored);
    }
  } cleanup{root};
  const auto base = root / "stories260K";
  if (!std::filesystem::exists(base)) {
    std::filesystem::create_directories(root);
    io::import_llama2c(shared_dir() / "data/stories260K/stories260K.bin",
                       shared_dir() / "data/stories260K/tok512.bin", base);
  }
  const auto out = root / ("swiftkv_m" + std::to_string(swiftkv_layers) + "_g" + std::to_string(group_size));
  if (!std::filesystem::exists(out)) {
    io::ConvertOptions options;
    options.swiftkv_layers = swiftkv_layers;
    options.group_size = group_size;
    io::convert_to_swiftkv(base, out, options);
  }
  return out;
}

// The first `bytes` of the TinyStories dev text, cut at a blank line, written to `path`.
inline std::filesystem::path tinystories_slice(const std::filesystem::path& path, size_t bytes,
                                               size_t skip = 0) {
  std::ifstream in(shared_dir() / "data/tinystories/tinystories_dev.txt", std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string text = buffer.str().substr(skip, bytes);
  const size_t cut = text.rfind("\n\n");
  if (cut != std::string::npos) text.resize(cut);
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

// Runs the swiftkv binary with `args` (a shell command line tail), output to `log`.
// Returns the wait status.
inline int run_swiftkv(const std::string& args, const std::filesystem::path& log) {
  const std::string command = swiftkv_binary().string() + " " + args + " > " + log.string() + " 2>&1";
  return std::system(command.c_str());
}

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// A tensor's stored bytes.
inline std::string tensor_bytes(const io::TensorStore& store, const std::string& name) {
  const io::TensorInfo& info = store.at(name);
  return std::string(reinterpret_cast<const char*>(info.data), info.nbytes);
}

}  // namespace swiftkv::testing
