#include "io/swiftkv_transform.h"

#include "common/error.h"

namespace swiftkv::io {

std::vector<SwiftkvInitTensor> swiftkv_init_plan(const ModelConfig& c) {
  std::vector<SwiftkvInitTensor> plan;
  if (!c.swiftkv()) return plan;
  const int64_t H = c.hidden_size, M = c.num_key_value_layers, G = c.key_value_group_size;
  const int64_t q_rows = c.num_attention_heads * c.head_dim, kv_rows = c.num_key_value_heads * c.head_dim;
  auto attention = [](int64_t layer, const std::string& projection) {
    return "model.layers." + std::to_string(layer) + ".self_attn." + projection;
  };
  // Weights and (when the model has them) biases follow the same rule.
  std::vector<std::string> parts = {".weight"};
  if (c.attention_bias) parts.push_back(".bias");

  plan.push_back(
      {"model.norm_swiftkv.weight", {H}, {"model.layers." + std::to_string(M) + ".input_layernorm.weight"}});
  for (int64_t layer = M; layer < c.num_hidden_layers; ++layer) {
    for (const std::string& part : parts) {
      std::vector<int64_t> shape =
          part == ".weight" ? std::vector<int64_t>{q_rows, H} : std::vector<int64_t>{q_rows};
      plan.push_back({attention(layer, "q_proj_swiftkv" + part), shape, {attention(layer, "q_proj" + part)}});
    }
    if ((layer - M) % G != 0) continue;  // only group leaders own K/V projections
    for (const char* projection : {"k_proj", "v_proj"}) {
      for (const std::string& part : parts) {
        std::vector<int64_t> shape =
            part == ".weight" ? std::vector<int64_t>{kv_rows, H} : std::vector<int64_t>{kv_rows};
        SwiftkvInitTensor tensor{attention(layer, std::string(projection) + "_swiftkv" + part), shape, {}};
        for (int64_t member = layer; member < layer + G; ++member)
          tensor.sources.push_back(attention(member, projection + part));
        plan.push_back(std::move(tensor));
      }
    }
  }
  return plan;
}

std::vector<float> swiftkv_init_tensor(const SwiftkvInitTensor& tensor, const ReadTensorF32& read_base) {
  size_t numel = 1;
  for (int64_t dim : tensor.shape) numel *= static_cast<size_t>(dim);
  if (tensor.sources.size() == 1) {
    std::vector<float> copy = read_base(tensor.sources.front());
    if (copy.size() != numel)
      throw Error("cannot initialise " + tensor.name + ": base tensor " + tensor.sources.front() + " has " +
                  std::to_string(copy.size()) + " elements, expected " + std::to_string(numel));
    return copy;
  }
  std::vector<double> sum(numel, 0.0);
  for (const std::string& source : tensor.sources) {
    std::vector<float> values = read_base(source);
    if (values.size() != numel)
      throw Error("cannot initialise " + tensor.name + ": base tensor " + source + " has " +
                  std::to_string(values.size()) + " elements, expected " + std::to_string(numel));
    for (size_t i = 0; i < numel; ++i) sum[i] += values[i];
  }
  std::vector<float> mean(numel);
  const double count = static_cast<double>(tensor.sources.size());
  for (size_t i = 0; i < numel; ++i) mean[i] = static_cast<float>(sum[i] / count);
  return mean;
}

}  // namespace swiftkv::io
