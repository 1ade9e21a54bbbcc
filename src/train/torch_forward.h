#pragma once
// Torch-free entry points into the trainer's torch model, for tests and tools that should not
// compile libtorch headers.
#include <cstdint>
#include <filesystem>
#include <vector>

namespace swiftkv::train {

// Logits (T, V) of one sequence in the training form, computed by the trainer's torch model:
// the student (SwiftKV) path, or the teacher (original q/k/v) path.
std::vector<float> torch_model_logits(const std::filesystem::path& model_dir,
                                      const std::vector<int32_t>& tokens, bool student);

}  // namespace swiftkv::train
