#pragma once
// What a checkpoint must contain for a config, and the check that it does.
#include <cstdint>
#include <string>
#include <vector>

#include "io/model_config.h"
#include "io/safetensors.h"

namespace swiftkv::io {

struct ExpectedTensor {
  std::string name;
  std::vector<int64_t> shape;
};

// Every tensor inference needs, with the shape the config implies (HF names:
// model.embed_tokens.weight, model.layers.{i}.self_attn.q_proj.weight, ..., lm_head.weight
// unless tied, model.norm_swiftkv.weight and *_swiftkv projections for SwiftKV, biases for
// qwen2 / attention_bias). Teacher q/k/v of layers >= M are NOT in this list.
std::vector<ExpectedTensor> inference_tensors(const ModelConfig& config);
// The teacher q/k/v (+bias) of layers >= M: optional at inference, needed for --swiftkv off.
std::vector<ExpectedTensor> teacher_tensors(const ModelConfig& config);

// Throws swiftkv::Error listing every problem, one per line: a missing tensor ("missing tensor
// X (config.json implies shape [c, d])"), a wrong shape ("model.safetensors: tensor X has shape
// [a, b], config.json implies [c, d] (file PATH)"), an unexpected tensor. Tolerated when
// present, shape-checked: the teacher q/k/v of layers >= M, lm_head of a tied model (some
// exporters keep it), and *.rotary_emb.inv_freq buffers (ignored).
void validate_checkpoint(const ModelConfig& config, const TensorStore& store);

}  // namespace swiftkv::io
