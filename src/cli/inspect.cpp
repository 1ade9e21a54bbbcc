// swiftkv inspect: what a checkpoint is, without packing its weights.
#include <cctype>
#include <cstdio>
#include <map>

#include "cli/commands.h"
#include "io/checkpoint.h"
#include "io/model_config.h"
#include "io/safetensors.h"

namespace swiftkv::cli {

namespace {

// Which part of the model a tensor belongs to, for the parameter table.
std::string tensor_group(const std::string& name, const io::ModelConfig& config) {
  if (name.find("_swiftkv") != std::string::npos) return "SwiftKV projections + norm";
  const std::string layers = "model.layers.";
  if (name.rfind(layers, 0) != 0) return name == "lm_head.weight" ? "lm_head" : "embedding + final norm";
  // Not every tensor under model.layers. has a layer number (e.g. an ignorable rotary buffer).
  const std::string rest = name.substr(layers.size());
  if (rest.empty() || !std::isdigit(static_cast<unsigned char>(rest[0]))) return "other buffers";
  const int64_t layer = std::stoll(rest);
  const bool teacher_qkv =
      layer >= config.num_key_value_layers &&
      (name.find("q_proj.") != std::string::npos || name.find("k_proj.") != std::string::npos ||
       name.find("v_proj.") != std::string::npos);
  if (teacher_qkv) return "teacher q/k/v (unused by SwiftKV)";
  return layer < config.num_key_value_layers ? "layers [0, M)" : "layers [M, L)";
}

void run_inspect(const std::string& model_dir) {
  io::ModelConfig config = io::load_model_config(model_dir);
  io::TensorStore store = io::TensorStore::open(model_dir);
  io::validate_checkpoint(config, store);
  const int64_t L = config.num_hidden_layers, M = config.num_key_value_layers,
                G = config.key_value_group_size;

  std::printf("model_type            %s\n", config.model_type.c_str());
  std::printf("layers                %lld (hidden %lld, FFN %lld)\n", (long long)L,
              (long long)config.hidden_size, (long long)config.intermediate_size);
  std::printf("heads                 %lld query, %lld key/value, head_dim %lld\n",
              (long long)config.num_attention_heads, (long long)config.num_key_value_heads,
              (long long)config.head_dim);
  std::printf("vocab                 %lld (tied embeddings: %s)\n", (long long)config.vocab_size,
              config.tie_word_embeddings ? "yes" : "no");
  std::printf("rope                  theta %g, scaling %s (factor %g)\n", config.rope_theta,
              config.rope_scaling.type.c_str(), config.rope_scaling.factor);
  std::printf("context               %lld tokens\n", (long long)config.max_position_embeddings);
  std::printf("eos ids              ");
  for (int id : config.eos_token_ids) std::printf(" %d", id);
  std::printf("\n");

  std::map<std::string, int64_t> parameters;
  int64_t total = 0;
  for (const auto& name : store.names()) {
    parameters[tensor_group(name, config)] += store.at(name).numel();
    total += store.at(name).numel();
  }
  std::printf("\nparameters            %.3f M in %zu tensors\n", total / 1e6, store.names().size());
  for (const auto& [group, count] : parameters) std::printf("  %-34s %12.3f M\n", group.c_str(), count / 1e6);

  std::printf("\nSwiftKV               %s\n", config.swiftkv() ? "on" : "off (plain model)");
  if (config.swiftkv()) {
    std::printf(
        "  layers [0, %lld) run every prompt token; layers [%lld, %lld) only the last prompt token and "
        "decode tokens\n",
        (long long)M, (long long)M, (long long)L);
    std::printf("  SingleInputKV: norm_swiftkv(h_%lld) -> K/V of %lld later layers in one GEMM\n",
                (long long)M, (long long)(L - M));
    std::printf("  AcrossKV group size %lld -> %lld physical KV caches (baseline %lld)\n", (long long)G,
                (long long)config.num_kv_caches(), (long long)L);
    bool teacher = true;
    for (const auto& tensor : io::teacher_tensors(config)) teacher = teacher && store.contains(tensor.name);
    std::printf("  teacher q/k/v         %s\n", teacher ? "present (--swiftkv off works)" : "absent");
  }
  std::printf(
      "\nKV cache per token         f32        bf16       int8 (+ a float scale per token and KV head)\n");
  const bool swiftkv = config.swiftkv();
  for (model::Path path : {model::Path::SwiftKV, model::Path::Teacher}) {
    if (path == model::Path::Teacher && !swiftkv) break;  // a plain model has one path
    std::printf("  %-24s", path == model::Path::Teacher ? "teacher (--swiftkv off)"
                           : swiftkv                    ? "SwiftKV"
                                                        : "model");
    for (model::KvDType dtype : {model::KvDType::F32, model::KvDType::BF16, model::KvDType::INT8})
      std::printf(" %-10s", format_bytes(double(model::kv_bytes_per_token(config, path, dtype))).c_str());
    std::printf(" (%lld caches)\n", (long long)model::num_kv_caches(config, path));
  }
}

}  // namespace

void add_inspect_command(CLI::App& app) {
  auto model_dir = std::make_shared<std::string>();
  CLI::App* command =
      app.add_subcommand("inspect", "Print a checkpoint's config, parameters and SwiftKV layout");
  command->add_option("-m,--model", *model_dir, "Hugging Face model directory")->required();
  command->callback([model_dir] { run_inspect(*model_dir); });
}

}  // namespace swiftkv::cli
