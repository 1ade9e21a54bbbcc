#pragma once
// The Llama / Qwen2 (and SwiftKV) model as libtorch tensor code, in the "training form"
// (every position through every layer), for distillation. Includes torch: only the trainer's
// own .cpp files include this header (each torch TU costs ~15 s to compile).
//
// Teacher = the same weights with the original q/k/v in every layer; student = SwiftKV
// (layers >= M take K/V from rmsnorm(h_M; norm_swiftkv) and Q from q_proj_swiftkv). Layers
// [0, M) are shared: prefix() computes h_M once, and later_layers() continues either path
// from it. Frozen weights are held as float32 tensors without grad; the trainable ones
// (norm_swiftkv and every *_swiftkv weight/bias) as float32 leaves with requires_grad.
#include <torch/torch.h>

#include <filesystem>
#include <string>
#include <vector>

#include "io/model_config.h"
#include "io/safetensors.h"

namespace swiftkv::train {

struct TrainableTensor {
  std::string name;        // checkpoint name, e.g. model.layers.3.self_attn.q_proj_swiftkv.weight
  torch::Tensor value;     // float32, requires_grad
  io::DType stored_dtype;  // the input checkpoint's dtype (the output is saved in it)
};

class TorchModel {
 public:
  explicit TorchModel(const std::filesystem::path& model_dir);

  const io::ModelConfig& config() const { return config_; }
  bool has_teacher() const;  // the original q/k/v of every layer are present
  const std::filesystem::path& directory() const { return directory_; }
  std::vector<TrainableTensor>& trainable() { return trainable_; }
  const std::vector<TrainableTensor>& trainable() const { return trainable_; }

  // (B, T) int64 tokens -> h_M (B, T, H): embedding and the frozen layers [0, M), no grad.
  torch::Tensor prefix(const torch::Tensor& tokens) const;

  struct LaterOutput {
    torch::Tensor last_layer_input;  // h_{L-1} (B, T, H)
    torch::Tensor final_hidden;      // rmsnorm(h_L; norm) (B, T, H), lm_head's input
  };
  // Layers [M, L) from h_M on the teacher path (original q/k/v) or the student path (SwiftKV).
  LaterOutput later_layers(const torch::Tensor& h_m, bool student) const;

  // (N, H) -> (N, V).
  torch::Tensor lm_head(const torch::Tensor& hidden) const;

 private:
  struct Linear {
    torch::Tensor weight, bias;  // bias undefined when absent
    torch::Tensor operator()(const torch::Tensor& x) const;
  };
  struct Layer {
    torch::Tensor input_layernorm, post_attention_layernorm;
    Linear q, k, v, o, gate, up, down;
    Linear q_swiftkv, k_swiftkv, v_swiftkv;  // layers >= M (k/v: group leaders only)
  };
  torch::Tensor rmsnorm(const torch::Tensor& x, const torch::Tensor& weight) const;
  torch::Tensor rope(const torch::Tensor& x, int64_t seq_len) const;  // (B, T, heads, d)
  // Causal GQA: q (B, T, nq*d), k/v (B, T, nkv*d) before RoPE (rope applied here).
  torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) const;
  torch::Tensor layer_forward(const Layer& layer, const torch::Tensor& h, const torch::Tensor& q,
                              const torch::Tensor& k, const torch::Tensor& v) const;
  torch::Tensor load(const io::TensorStore& store, const std::string& name, bool trainable);

  io::ModelConfig config_;
  std::filesystem::path directory_;
  torch::Tensor embed_tokens_, lm_head_, norm_, norm_swiftkv_;
  torch::Tensor rope_cos_, rope_sin_;  // (max_positions, d/2)
  std::vector<Layer> layers_;
  std::vector<TrainableTensor> trainable_;
};

}  // namespace swiftkv::train
