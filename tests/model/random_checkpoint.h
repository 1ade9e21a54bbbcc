#pragma once
// A checkpoint of a given config with every tensor random (SwiftKV projections independent
// of the teacher's, as after distillation), for tests that compare paths of the engine.
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "common/files.h"
#include "io/checkpoint.h"
#include "io/model_config.h"
#include "io/safetensors.h"

namespace swiftkv::testing {

inline void write_random_checkpoint(const io::ModelConfig& config, const std::filesystem::path& dir,
                                    uint64_t seed) {
  std::filesystem::create_directories(dir);
  write_json_file(dir / "config.json", io::model_config_to_json(config));
  std::vector<io::ExpectedTensor> tensors = io::inference_tensors(config);
  for (auto& teacher : io::teacher_tensors(config)) tensors.push_back(teacher);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<std::vector<float>> values;
  std::vector<io::TensorToWrite> to_write;
  for (const auto& tensor : tensors) {
    int64_t numel = 1;
    for (int64_t dim : tensor.shape) numel *= dim;
    std::vector<float> data(static_cast<size_t>(numel));
    const bool norm = tensor.shape.size() == 1 && tensor.name.find("norm") != std::string::npos;
    // Weights scaled like a trained model's (std ~ 1/sqrt(fan_in)) so activations stay O(1);
    // norms around 1; biases small.
    const float scale = norm                       ? 0.2f
                        : tensor.shape.size() == 2 ? 1.0f / std::sqrt(float(tensor.shape[1]))
                                                   : 0.1f;
    for (auto& value : data) value = (norm ? 1.0f : 0.0f) + scale * normal(rng);
    values.push_back(std::move(data));
  }
  for (size_t i = 0; i < tensors.size(); ++i)
    to_write.push_back({tensors[i].name, io::DType::F32, tensors[i].shape, values[i].data()});
  io::write_safetensors(dir / "model.safetensors", to_write);
}

// A small Llama-shaped config for tests (L layers, SwiftKV with M and G when M < L).
inline io::ModelConfig tiny_config(int64_t layers, int64_t swiftkv_layers, int64_t group_size,
                                   bool bias = false) {
  io::ModelConfig config;
  config.model_type =
      swiftkv_layers < layers ? (bias ? "qwen2_swiftkv" : "llama_swiftkv") : (bias ? "qwen2" : "llama");
  config.vocab_size = 101;
  config.hidden_size = 48;
  config.intermediate_size = 80;
  config.num_hidden_layers = layers;
  config.num_attention_heads = 6;
  config.num_key_value_heads = 2;
  config.head_dim = 8;
  config.rms_norm_eps = 1e-5;
  config.rope_theta = 10000;
  config.rope_scaling = {"llama3", 4.0, 1.0, 4.0, 64};
  config.tie_word_embeddings = false;
  config.attention_bias = bias;
  config.max_position_embeddings = 512;
  config.bos_token_id = 1;
  config.eos_token_ids = {2};
  config.num_key_value_layers = swiftkv_layers;
  config.key_value_group_size = group_size;
  return config;
}

}  // namespace swiftkv::testing
