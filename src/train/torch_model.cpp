#include "train/torch_model.h"

#include <cmath>

#include "common/error.h"
#include "kernels/ops.h"
#include "train/torch_forward.h"

namespace swiftkv::train {

namespace {

std::string layer_prefix(int64_t layer) { return "model.layers." + std::to_string(layer) + "."; }

bool is_trainable_name(const std::string& name) {
  return name == "model.norm_swiftkv.weight" || name.find("_proj_swiftkv.") != std::string::npos;
}

}  // namespace

torch::Tensor TorchModel::Linear::operator()(const torch::Tensor& x) const {
  return bias.defined() ? torch::linear(x, weight, bias) : torch::linear(x, weight);
}

torch::Tensor TorchModel::load(const io::TensorStore& store, const std::string& name, bool trainable) {
  const io::TensorInfo& info = store.at(name);
  std::vector<float> values = store.read_f32(name);
  torch::Tensor tensor = torch::from_blob(values.data(), info.shape, torch::kFloat32).clone();
  if (trainable) {
    if (!is_trainable_name(name)) throw Error("internal: " + name + " is not a SwiftKV tensor");
    tensor.set_requires_grad(true);
    trainable_.push_back({name, tensor, info.dtype});
  }
  return tensor;
}

TorchModel::TorchModel(const std::filesystem::path& model_dir) : directory_(model_dir) {
  config_ = io::load_model_config(model_dir);
  const io::ModelConfig& c = config_;
  const io::TensorStore store = io::TensorStore::open(model_dir);
  const int64_t L = c.num_hidden_layers, M = c.num_key_value_layers, G = c.key_value_group_size;
  const bool bias = c.attention_bias;
  auto linear = [&](const std::string& prefix, bool with_bias, bool trainable) {
    Linear result;
    result.weight = load(store, prefix + ".weight", trainable);
    if (with_bias) result.bias = load(store, prefix + ".bias", trainable);
    return result;
  };
  embed_tokens_ = load(store, "model.embed_tokens.weight", false);
  lm_head_ = c.tie_word_embeddings ? embed_tokens_ : load(store, "lm_head.weight", false);
  norm_ = load(store, "model.norm.weight", false);
  if (c.swiftkv()) norm_swiftkv_ = load(store, "model.norm_swiftkv.weight", true);
  layers_.resize(size_t(L));
  for (int64_t l = 0; l < L; ++l) {
    Layer& layer = layers_[size_t(l)];
    const std::string p = layer_prefix(l);
    layer.input_layernorm = load(store, p + "input_layernorm.weight", false);
    layer.post_attention_layernorm = load(store, p + "post_attention_layernorm.weight", false);
    if (l < M || store.contains(p + "self_attn.q_proj.weight")) {
      layer.q = linear(p + "self_attn.q_proj", bias, false);
      layer.k = linear(p + "self_attn.k_proj", bias, false);
      layer.v = linear(p + "self_attn.v_proj", bias, false);
    }
    if (l >= M) {
      layer.q_swiftkv = linear(p + "self_attn.q_proj_swiftkv", bias, true);
      if ((l - M) % G == 0) {
        layer.k_swiftkv = linear(p + "self_attn.k_proj_swiftkv", bias, true);
        layer.v_swiftkv = linear(p + "self_attn.v_proj_swiftkv", bias, true);
      }
    }
    // HF Llama puts attention_bias on o_proj too; Qwen2 never has one.
    layer.o = linear(p + "self_attn.o_proj", store.contains(p + "self_attn.o_proj.bias"), false);
    layer.gate = linear(p + "mlp.gate_proj", false, false);
    layer.up = linear(p + "mlp.up_proj", false, false);
    layer.down = linear(p + "mlp.down_proj", false, false);
  }
  // The engine's RoPE frequencies (incl. linear / llama3 scaling), in double.
  const kernels::RopeTable table(c.head_dim, c.rope_theta, c.rope_scaling, 1);
  const std::vector<double>& inv_freq = table.inv_freq();
  torch::Tensor frequencies =
      torch::from_blob(const_cast<double*>(inv_freq.data()), {int64_t(inv_freq.size())}, torch::kFloat64)
          .clone();
  const int64_t max_positions = std::max<int64_t>(c.max_position_embeddings, 1);
  torch::Tensor angles =
      torch::arange(max_positions, torch::kFloat64).unsqueeze(1) * frequencies.unsqueeze(0);
  rope_cos_ = angles.cos().to(torch::kFloat32);
  rope_sin_ = angles.sin().to(torch::kFloat32);
}

bool TorchModel::has_teacher() const {
  for (const Layer& layer : layers_)
    if (!layer.q.weight.defined()) return false;
  return true;
}

torch::Tensor TorchModel::rmsnorm(const torch::Tensor& x, const torch::Tensor& weight) const {
  // HF LlamaRMSNorm: x / sqrt(mean(x^2) + eps) * w, in float32.
  return x * torch::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + config_.rms_norm_eps) * weight;
}

torch::Tensor TorchModel::rope(const torch::Tensor& x, int64_t seq_len) const {
  // (B, T, heads, d), HF rotate_half layout: element i pairs with i + d/2.
  if (seq_len > rope_cos_.size(0)) {
    throw Error("sequence of " + std::to_string(seq_len) + " tokens is longer than max_position_embeddings " +
                std::to_string(rope_cos_.size(0)));
  }
  const int64_t half = x.size(-1) / 2;
  const torch::Tensor cos = rope_cos_.slice(0, 0, seq_len).view({1, seq_len, 1, half});
  const torch::Tensor sin = rope_sin_.slice(0, 0, seq_len).view({1, seq_len, 1, half});
  const torch::Tensor x1 = x.slice(-1, 0, half), x2 = x.slice(-1, half);
  return torch::cat({x1 * cos - x2 * sin, x2 * cos + x1 * sin}, -1);
}

torch::Tensor TorchModel::attention(const torch::Tensor& q, const torch::Tensor& k,
                                    const torch::Tensor& v) const {
  const int64_t B = q.size(0), T = q.size(1);
  const int64_t nq = config_.num_attention_heads, nkv = config_.num_key_value_heads, d = config_.head_dim;
  torch::Tensor queries = rope(q.view({B, T, nq, d}), T).transpose(1, 2);  // (B, nq, T, d)
  torch::Tensor keys = rope(k.view({B, T, nkv, d}), T).transpose(1, 2);    // (B, nkv, T, d)
  torch::Tensor values = v.view({B, T, nkv, d}).transpose(1, 2);
  if (nq != nkv) {  // query head h reads KV head h / (nq / nkv)
    keys = keys.repeat_interleave(nq / nkv, 1);
    values = values.repeat_interleave(nq / nkv, 1);
  }
  torch::Tensor scores = torch::matmul(queries, keys.transpose(-1, -2)) * (1.0 / std::sqrt(double(d)));
  const torch::Tensor future = torch::ones({T, T}, torch::kBool).triu(1);
  scores = scores.masked_fill(future, -std::numeric_limits<float>::infinity());
  torch::Tensor out = torch::matmul(torch::softmax(scores, -1), values);  // (B, nq, T, d)
  return out.transpose(1, 2).reshape({B, T, nq * d});
}

torch::Tensor TorchModel::layer_forward(const Layer& layer, const torch::Tensor& h, const torch::Tensor& q,
                                        const torch::Tensor& k, const torch::Tensor& v) const {
  torch::Tensor after_attention = h + layer.o(attention(q, k, v));
  const torch::Tensor b = rmsnorm(after_attention, layer.post_attention_layernorm);
  return after_attention + layer.down(torch::silu(layer.gate(b)) * layer.up(b));
}

torch::Tensor TorchModel::prefix(const torch::Tensor& tokens) const {
  torch::NoGradGuard no_grad;
  const int64_t B = tokens.size(0), T = tokens.size(1), H = config_.hidden_size;
  if (tokens.numel() > 0 &&
      (tokens.min().item<int64_t>() < 0 || tokens.max().item<int64_t>() >= config_.vocab_size))
    throw Error("token id outside the model's vocabulary of " + std::to_string(config_.vocab_size));
  torch::Tensor h = embed_tokens_.index_select(0, tokens.reshape({-1})).view({B, T, H});
  for (int64_t l = 0; l < config_.num_key_value_layers; ++l) {
    const Layer& layer = layers_[size_t(l)];
    const torch::Tensor a = rmsnorm(h, layer.input_layernorm);
    h = layer_forward(layer, h, layer.q(a), layer.k(a), layer.v(a));
  }
  return h;
}

TorchModel::LaterOutput TorchModel::later_layers(const torch::Tensor& h_m, bool student) const {
  const int64_t L = config_.num_hidden_layers, M = config_.num_key_value_layers;
  const int64_t G = config_.key_value_group_size;
  if (!student && !has_teacher())
    throw Error(directory_.string() + " has no teacher q/k/v for layers >= " + std::to_string(M) +
                " (converted with --drop-teacher?); distillation needs them");
  LaterOutput out;
  torch::Tensor h = h_m;
  torch::Tensor single_input;  // rmsnorm(h_M; norm_swiftkv)
  if (student) single_input = rmsnorm(h_m, norm_swiftkv_);
  torch::Tensor group_k, group_v;
  for (int64_t j = M; j < L; ++j) {
    const Layer& layer = layers_[size_t(j)];
    if (j == L - 1) out.last_layer_input = h;
    const torch::Tensor a = rmsnorm(h, layer.input_layernorm);
    if (student) {
      if ((j - M) % G == 0) {
        group_k = layer.k_swiftkv(single_input);
        group_v = layer.v_swiftkv(single_input);
      }
      h = layer_forward(layer, h, layer.q_swiftkv(a), group_k, group_v);
    } else {
      h = layer_forward(layer, h, layer.q(a), layer.k(a), layer.v(a));
    }
  }
  out.final_hidden = rmsnorm(h, norm_);
  return out;
}

torch::Tensor TorchModel::lm_head(const torch::Tensor& hidden) const {
  return torch::matmul(hidden, lm_head_.t());
}

std::vector<float> torch_model_logits(const std::filesystem::path& model_dir,
                                      const std::vector<int32_t>& tokens, bool student) {
  TorchModel model(model_dir);
  torch::NoGradGuard no_grad;
  const int64_t T = int64_t(tokens.size());
  torch::Tensor ids =
      torch::from_blob(const_cast<int32_t*>(tokens.data()), {1, T}, torch::kInt32).to(torch::kInt64);
  const torch::Tensor h_m = model.prefix(ids);
  const torch::Tensor hidden = model.later_layers(h_m, student && model.config().swiftkv()).final_hidden;
  torch::Tensor logits = model.lm_head(hidden.view({T, -1})).contiguous();
  return std::vector<float>(logits.data_ptr<float>(), logits.data_ptr<float>() + logits.numel());
}

}  // namespace swiftkv::train
