#pragma once
// Helpers for the io tests: hand-made safetensors files (good and deliberately broken) and
// small checkpoints that match a config.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "expect_error.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"

namespace swiftkv::io::testing {

// Writes exactly: 8-byte little-endian length of `header`, `header`, `data`.
inline void write_raw_safetensors(const std::filesystem::path& path, const std::string& header,
                                  const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  uint64_t length = header.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>(length >> (8 * i)));
  out << header << data;
}

// Writes every tensor in `tensors` as F32 filled with a value derived from its index.
inline void write_checkpoint(const std::filesystem::path& dir, const std::vector<ExpectedTensor>& tensors) {
  std::vector<std::vector<float>> storage;
  std::vector<TensorToWrite> to_write;
  for (const ExpectedTensor& tensor : tensors) {
    int64_t numel = 1;
    for (int64_t dim : tensor.shape) numel *= dim;
    storage.emplace_back(static_cast<size_t>(numel), 0.01f * static_cast<float>(storage.size()));
  }
  for (size_t i = 0; i < tensors.size(); ++i)
    to_write.push_back({tensors[i].name, DType::F32, tensors[i].shape, storage[i].data()});
  write_safetensors(dir / "model.safetensors", to_write);
}

using swiftkv::testing::expect_error;

}  // namespace swiftkv::io::testing
