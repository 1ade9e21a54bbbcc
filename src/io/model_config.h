#pragma once
// The model's hyper-parameters, read from a Hugging Face config.json (llama, llama_swiftkv,
// qwen2, qwen2_swiftkv) plus generation_config.json when present.
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace swiftkv::io {

struct RopeScaling {
  std::string type = "none";  // "none", "linear", "llama3"
  double factor = 1.0;
  double low_freq_factor = 1.0;                     // llama3 only
  double high_freq_factor = 4.0;                    // llama3 only
  int64_t original_max_position_embeddings = 8192;  // llama3 only
};

struct ModelConfig {
  std::string model_type;  // "llama", "llama_swiftkv", "qwen2", "qwen2_swiftkv"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;    // L
  int64_t num_attention_heads = 0;  // nq
  int64_t num_key_value_heads = 0;  // nkv
  int64_t head_dim = 0;             // d (hidden_size / nq unless given)
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v (and *_swiftkv) carry biases; always true for qwen2
  int64_t max_position_embeddings = 2048;
  std::optional<int> bos_token_id;
  std::vector<int> eos_token_ids;
  // SwiftKV. num_key_value_layers == num_hidden_layers means SwiftKV is off (the config
  // value absent or 0 is normalised to L on load).
  int64_t num_key_value_layers = 0;  // M
  int64_t key_value_group_size = 1;  // G

  bool swiftkv() const { return num_key_value_layers < num_hidden_layers; }
  // Physical KV caches: one per early layer plus one per AcrossKV group.
  int64_t num_kv_caches() const {
    return num_key_value_layers + (num_hidden_layers - num_key_value_layers) / key_value_group_size;
  }
  // Which physical KV cache layer `layer` reads and (for layers < M) writes.
  int64_t kv_cache_index(int64_t layer) const {
    if (layer < num_key_value_layers) return layer;
    return num_key_value_layers + (layer - num_key_value_layers) / key_value_group_size;
  }
};

// Sampling defaults from generation_config.json (they win over the program's own defaults,
// as in vLLM; request/command-line values win over them).
struct GenerationDefaults {
  std::optional<double> temperature, top_p, min_p, repetition_penalty;
  std::optional<int> top_k;
  std::optional<bool> do_sample;  // false means greedy
};

// Parses config.json text already loaded as JSON. `source` names the file in errors.
// Throws swiftkv::Error for missing/invalid fields and inconsistent values (heads that do
// not divide, (L-M) % G != 0, ...).
ModelConfig parse_model_config(const nlohmann::json& config, const std::string& source);
nlohmann::json model_config_to_json(const ModelConfig& config);

// Reads DIR/config.json and, when present, DIR/generation_config.json (its eos ids replace
// the config's). Broken JSON is reported with the file name and position.
ModelConfig load_model_config(const std::filesystem::path& model_dir);
GenerationDefaults load_generation_defaults(const std::filesystem::path& model_dir);

}  // namespace swiftkv::io
