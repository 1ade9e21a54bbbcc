#include "io/checkpoint.h"

#include <set>

#include "common/error.h"

namespace swiftkv::io {
namespace {

std::string layer_prefix(int64_t layer) { return "model.layers." + std::to_string(layer) + "."; }

// A projection [out, in] and, when the config has attention biases, its bias [out].
void add_projection(std::vector<ExpectedTensor>& list, const std::string& name, int64_t out, int64_t in,
                    bool bias) {
  list.push_back({name + ".weight", {out, in}});
  if (bias) list.push_back({name + ".bias", {out}});
}

bool is_group_leader(const ModelConfig& c, int64_t layer) {
  return layer >= c.num_key_value_layers && (layer - c.num_key_value_layers) % c.key_value_group_size == 0;
}

// Buffers some exporters save beside the weights; they carry nothing the engine needs.
bool is_ignorable_buffer(const std::string& name) {
  const std::string suffix = ".rotary_emb.inv_freq";
  return name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::vector<ExpectedTensor> inference_tensors(const ModelConfig& c) {
  const int64_t H = c.hidden_size, F = c.intermediate_size;
  const int64_t q_rows = c.num_attention_heads * c.head_dim, kv_rows = c.num_key_value_heads * c.head_dim;
  const bool bias = c.attention_bias;
  std::vector<ExpectedTensor> list;
  list.push_back({"model.embed_tokens.weight", {c.vocab_size, H}});
  for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer) {
    const std::string p = layer_prefix(layer);
    list.push_back({p + "input_layernorm.weight", {H}});
    if (layer < c.num_key_value_layers) {
      add_projection(list, p + "self_attn.q_proj", q_rows, H, bias);
      add_projection(list, p + "self_attn.k_proj", kv_rows, H, bias);
      add_projection(list, p + "self_attn.v_proj", kv_rows, H, bias);
    } else {
      add_projection(list, p + "self_attn.q_proj_swiftkv", q_rows, H, bias);
      if (is_group_leader(c, layer)) {
        add_projection(list, p + "self_attn.k_proj_swiftkv", kv_rows, H, bias);
        add_projection(list, p + "self_attn.v_proj_swiftkv", kv_rows, H, bias);
      }
    }
    list.push_back({p + "self_attn.o_proj.weight", {H, q_rows}});
    list.push_back({p + "post_attention_layernorm.weight", {H}});
    list.push_back({p + "mlp.gate_proj.weight", {F, H}});
    list.push_back({p + "mlp.up_proj.weight", {F, H}});
    list.push_back({p + "mlp.down_proj.weight", {H, F}});
  }
  list.push_back({"model.norm.weight", {H}});
  if (c.swiftkv()) list.push_back({"model.norm_swiftkv.weight", {H}});
  if (!c.tie_word_embeddings) list.push_back({"lm_head.weight", {c.vocab_size, H}});
  return list;
}

std::vector<ExpectedTensor> teacher_tensors(const ModelConfig& c) {
  const int64_t H = c.hidden_size;
  const int64_t q_rows = c.num_attention_heads * c.head_dim, kv_rows = c.num_key_value_heads * c.head_dim;
  std::vector<ExpectedTensor> list;
  for (int64_t layer = c.num_key_value_layers; layer < c.num_hidden_layers; ++layer) {
    const std::string p = layer_prefix(layer);
    add_projection(list, p + "self_attn.q_proj", q_rows, H, c.attention_bias);
    add_projection(list, p + "self_attn.k_proj", kv_rows, H, c.attention_bias);
    add_projection(list, p + "self_attn.v_proj", kv_rows, H, c.attention_bias);
  }
  return list;
}

void validate_checkpoint(const ModelConfig& config, const TensorStore& store) {
  std::vector<std::string> problems;
  std::set<std::string> known;
  auto check_shape = [&](const ExpectedTensor& expected) {
    const TensorInfo& info = store.at(expected.name);
    if (info.shape != expected.shape)
      problems.push_back(info.file.filename().string() + ": tensor " + expected.name + " has shape " +
                         shape_string(info.shape) + ", config.json implies " + shape_string(expected.shape) +
                         " (file " + info.file.string() + ")");
  };
  for (const ExpectedTensor& expected : inference_tensors(config)) {
    known.insert(expected.name);
    if (!store.contains(expected.name)) {
      problems.push_back("missing tensor " + expected.name + " (config.json implies shape " +
                         shape_string(expected.shape) + ")");
    } else {
      check_shape(expected);
    }
  }
  // Optional tensors: checked when present, never required.
  std::vector<ExpectedTensor> optional = teacher_tensors(config);
  // Some tied checkpoints still carry a copy of lm_head; the engine uses the embedding.
  if (config.tie_word_embeddings)
    optional.push_back({"lm_head.weight", {config.vocab_size, config.hidden_size}});
  // The reference SwiftKV models create norm_swiftkv even with SwiftKV off (M = L).
  if (!config.swiftkv()) optional.push_back({"model.norm_swiftkv.weight", {config.hidden_size}});
  for (const ExpectedTensor& expected : optional) {
    known.insert(expected.name);
    if (store.contains(expected.name)) check_shape(expected);
  }
  for (const std::string& name : store.names()) {
    if (known.count(name) || is_ignorable_buffer(name)) continue;
    const TensorInfo& info = store.at(name);
    problems.push_back(info.file.filename().string() + ": unexpected tensor " + name + " " +
                       shape_string(info.shape) + " (not used by a " + config.model_type +
                       " model with this config.json; file " + info.file.string() + ")");
  }
  if (problems.empty()) return;
  std::string message = "checkpoint " + store.directory().string() + " does not match its config.json (" +
                        std::to_string(problems.size()) + (problems.size() == 1 ? " problem" : " problems") +
                        "):";
  for (const std::string& problem : problems) message += "\n  " + problem;
  throw Error(message);
}

}  // namespace swiftkv::io
