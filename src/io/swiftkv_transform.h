#pragma once
// Initialising a SwiftKV student from its base model (SWIFTKV.md, "Transformation"): every
// new tensor is a copy of a base tensor, or the element-wise mean of the G base tensors of an
// AcrossKV group. Written as a plan (names in, names out) so that `random-model` (which
// regenerates base tensors from a seed) and `convert` (which reads a checkpoint) share it.
#include <functional>
#include <string>
#include <vector>

#include "io/model_config.h"

namespace swiftkv::io {

struct SwiftkvInitTensor {
  std::string name;                  // e.g. model.layers.9.self_attn.k_proj_swiftkv.weight
  std::vector<int64_t> shape;        // [out, in] or [out]
  std::vector<std::string> sources;  // base tensors averaged into it (one: an exact copy)
};

// For a config with SwiftKV on (1 <= M < L): model.norm_swiftkv.weight <- layer M's
// input_layernorm; q_proj_swiftkv[j] <- q_proj[j] for every j >= M; for each group leader
// k/v_proj_swiftkv <- mean of k/v_proj over its G layers; biases alike when attention_bias.
// Empty when SwiftKV is off.
std::vector<SwiftkvInitTensor> swiftkv_init_plan(const ModelConfig& config);

// Computes one planned tensor. `read_base(name)` returns a base tensor as float32 (with the
// values as stored, so a copy is exact); the mean is accumulated in double.
using ReadTensorF32 = std::function<std::vector<float>(const std::string& name)>;
std::vector<float> swiftkv_init_tensor(const SwiftkvInitTensor& tensor, const ReadTensorF32& read_base);

}  // namespace swiftkv::io
