#include "io/random_model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "common/bf16.h"
#include "common/files.h"
#include "io/checkpoint.h"
#include "io/swiftkv_transform.h"
#include "io_test_util.h"
#include "test_paths.h"
#include "tokenizer/tokenizer.h"

namespace swiftkv::io {
namespace {

using testing::expect_error;

int64_t parameter_count(const ModelConfig& config) {
  int64_t total = 0;
  for (const ExpectedTensor& tensor : inference_tensors(config)) {
    int64_t numel = 1;
    for (int64_t dim : tensor.shape) numel *= dim;
    total += numel;
  }
  return total;
}

TEST(RandomModel, PresetsHaveThePublishedShapes) {
  // Parameter counts of the published checkpoints (Hugging Face model cards / safetensors).
  EXPECT_EQ(parameter_count(random_model_config("llama-3.2-1b")), 1'235'814'400);
  EXPECT_EQ(parameter_count(random_model_config("llama-3.1-8b")), 8'030'261'248);
  EXPECT_EQ(parameter_count(random_model_config("tinyllama-1.1b")), 1'100'048'384);
  EXPECT_EQ(parameter_count(random_model_config("qwen2.5-0.5b")), 494'032'768);

  ModelConfig c = random_model_config("llama-3.2-1b", 8);
  EXPECT_EQ(c.model_type, "llama_swiftkv");
  EXPECT_EQ(c.num_key_value_layers, 8);
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 32.0);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(random_model_config("qwen2.5-0.5b", 12, 4).model_type, "qwen2_swiftkv");
  EXPECT_TRUE(random_model_config("qwen2.5-0.5b").attention_bias);
  EXPECT_EQ(random_model_config("llama-3.1-8b", 32).model_type, "llama");  // M = L: plain

  expect_error([] { random_model_config("gpt-5"); },
               {"unknown random-model preset \"gpt-5\"", "llama-3.2-1b", "tiny"});
  expect_error([] { random_model_config("tiny", 7); },
               {"random-model tiny", "\"num_key_value_layers\" is 7"});
  expect_error([] { random_model_config("tiny", 3, 2); }, {"\"key_value_group_size\" (2) must divide"});
}

TEST(RandomModel, TinySwiftKVWithGroupsValidatesAndIsInitialisedFromTheBase) {
  auto parent = swiftkv::testing::fresh_temp_dir("io_random_tiny");
  auto out = parent / "model";
  write_random_model("tiny", 2, 2, out, /*seed=*/7);  // L = 6: later layers 2..5, leaders 2 and 4
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(parent), {}), 1);

  ModelConfig config = load_model_config(out);
  EXPECT_EQ(config.model_type, "llama_swiftkv");
  EXPECT_EQ(config.num_key_value_layers, 2);
  EXPECT_EQ(config.key_value_group_size, 2);
  EXPECT_EQ(read_json_file(out / "config.json")["architectures"][0], "LlamaSwiftKVForCausalLM");
  TensorStore store = TensorStore::open(out);
  EXPECT_NO_THROW(validate_checkpoint(config, store));
  // The teacher q/k/v of layers >= M are kept, so SwiftKV can be switched off.
  for (const ExpectedTensor& tensor : teacher_tensors(config))
    EXPECT_TRUE(store.contains(tensor.name)) << tensor.name;
  for (const std::string& name : store.names()) EXPECT_EQ(store.at(name).dtype, DType::BF16) << name;

  // k/v_proj_swiftkv of a leader = mean of the group's k/v_proj, rounded to bf16 once.
  for (const char* projection : {"k_proj", "v_proj"}) {
    const std::string p = std::string("model.layers.");
    std::vector<float> a = store.read_f32(p + "4.self_attn." + projection + ".weight");
    std::vector<float> b = store.read_f32(p + "5.self_attn." + projection + ".weight");
    std::vector<float> mean = store.read_f32(p + "4.self_attn." + projection + "_swiftkv.weight");
    ASSERT_EQ(mean.size(), a.size());
    size_t differs_from_a = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_EQ(mean[i], bf16_to_f32(f32_to_bf16((a[i] + b[i]) / 2))) << projection << " " << i;
      differs_from_a += mean[i] != a[i];
    }
    EXPECT_GT(differs_from_a, a.size() / 2) << "the two layers' weights should differ";
  }
  EXPECT_FALSE(store.contains("model.layers.3.self_attn.k_proj_swiftkv.weight"));
  EXPECT_EQ(store.read_f32("model.layers.3.self_attn.q_proj_swiftkv.weight"),
            store.read_f32("model.layers.3.self_attn.q_proj.weight"));
  EXPECT_EQ(store.read_f32("model.norm_swiftkv.weight"),
            store.read_f32("model.layers.2.input_layernorm.weight"));

  // Base weights look like N(0, 0.02^2); norms are 1.
  std::vector<float> embed = store.read_f32("model.embed_tokens.weight");
  double sum = 0, squares = 0;
  for (float value : embed) sum += value, squares += double(value) * value;
  double mean = sum / embed.size(), std = std::sqrt(squares / embed.size() - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.002);
  EXPECT_NEAR(std, 0.02, 0.002);
  EXPECT_EQ(store.read_f32("model.norm.weight"), std::vector<float>(64, 1.0f));
}

TEST(RandomModel, QwenBiasesAreAveragedToo) {
  auto out = swiftkv::testing::fresh_temp_dir("io_random_qwen") / "model";
  write_random_model("tiny-qwen2", 4, 2, out, 1, DType::F32);
  ModelConfig config = load_model_config(out);
  EXPECT_EQ(config.model_type, "qwen2_swiftkv");
  TensorStore store = TensorStore::open(out);
  EXPECT_NO_THROW(validate_checkpoint(config, store));
  std::vector<float> a = store.read_f32("model.layers.4.self_attn.v_proj.bias");
  std::vector<float> b = store.read_f32("model.layers.5.self_attn.v_proj.bias");
  std::vector<float> mean = store.read_f32("model.layers.4.self_attn.v_proj_swiftkv.bias");
  ASSERT_EQ(mean.size(), 32u);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_FLOAT_EQ(mean[i], (a[i] + b[i]) / 2) << i;
  EXPECT_EQ(store.read_f32("model.layers.5.self_attn.q_proj_swiftkv.bias"),
            store.read_f32("model.layers.5.self_attn.q_proj.bias"));
  EXPECT_EQ(store.at("model.layers.0.self_attn.q_proj.weight").dtype, DType::F32);
}

TEST(RandomModel, PlainModelIsDeterministicFromTheSeed) {
  auto dir = swiftkv::testing::fresh_temp_dir("io_random_seed");
  write_random_model("tiny-llama3", std::nullopt, 1, dir / "a", 3);
  write_random_model("tiny-llama3", 0, 1, dir / "b", 3);
  write_random_model("tiny-llama3", std::nullopt, 1, dir / "c", 4);
  ModelConfig config = load_model_config(dir / "a");
  EXPECT_EQ(config.model_type, "llama");
  EXPECT_FALSE(config.swiftkv());
  EXPECT_EQ(config.rope_scaling.type, "llama3");
  TensorStore a = TensorStore::open(dir / "a"), b = TensorStore::open(dir / "b"),
              c = TensorStore::open(dir / "c");
  EXPECT_NO_THROW(validate_checkpoint(config, a));
  EXPECT_FALSE(a.contains("model.norm_swiftkv.weight"));
  const std::string name = "model.layers.3.mlp.down_proj.weight";
  EXPECT_EQ(a.read_f32(name), b.read_f32(name));
  EXPECT_NE(a.read_f32(name), c.read_f32(name));
}

TEST(RandomModel, WritesAByteLevelTokenizer) {
  auto out = swiftkv::testing::fresh_temp_dir("io_random_tokenizer") / "model";
  write_random_model("tiny", std::nullopt, 1, out);
  nlohmann::json tokenizer = read_json_file(out / "tokenizer.json");
  EXPECT_EQ(tokenizer["pre_tokenizer"]["type"], "ByteLevel");
  EXPECT_EQ(tokenizer["decoder"]["type"], "ByteLevel");
  const nlohmann::json& vocab = tokenizer["model"]["vocab"];
  EXPECT_EQ(vocab.size(), 320u);
  EXPECT_EQ(vocab["A"], 65);
  EXPECT_EQ(vocab["\xC4\xA0"], 32);   // GPT-2's symbol for the space byte, U+0120
  EXPECT_EQ(vocab["\xC4\x80"], 0);    // U+0100 for byte 0
  EXPECT_EQ(vocab["\xC3\xBF"], 255);  // byte 255 maps to itself (U+00FF)
  EXPECT_EQ(vocab["<s>"], 256);
  ASSERT_EQ(tokenizer["added_tokens"].size(), 2u);
  EXPECT_EQ(tokenizer["added_tokens"][1]["content"], "</s>");
  EXPECT_EQ(tokenizer["added_tokens"][1]["id"], 257);
  EXPECT_EQ(tokenizer["added_tokens"][1]["special"], true);
  nlohmann::json tokenizer_config = read_json_file(out / "tokenizer_config.json");
  EXPECT_EQ(tokenizer_config["bos_token"], "<s>");
  EXPECT_EQ(tokenizer_config["eos_token"], "</s>");
  ModelConfig config = load_model_config(out);
  EXPECT_EQ(config.bos_token_id, 256);
  EXPECT_EQ(config.eos_token_ids, std::vector<int>{257});
  // The tokenizer library loads it: every byte is its own token, BOS is prepended, text round-trips.
  tokenizer::Tokenizer loaded = tokenizer::Tokenizer::from_dir(out);
  const std::string text = "Hello, w\xC3\xB6rld!\n\t";
  std::vector<int32_t> expected = {256};
  for (unsigned char byte : text) expected.push_back(byte);
  EXPECT_EQ(loaded.encode(text), expected);
  EXPECT_EQ(loaded.decode(expected, /*skip_special_tokens=*/true), text);
  EXPECT_EQ(loaded.vocab_size(), 320);
  EXPECT_EQ(loaded.eos_ids(), std::vector<int32_t>{257});
  // Distinct symbols for all 256 bytes.
  std::set<int> ids;
  for (const auto& [symbol, id] : vocab.items())
    if (id.get<int>() < 256) ids.insert(id.get<int>());
  EXPECT_EQ(ids.size(), 256u);
}

TEST(SwiftkvTransform, PlanFollowsTheTransformation) {
  ModelConfig config = random_model_config("tiny-qwen2", 3, 3);  // later layers 3..5, one group
  std::vector<SwiftkvInitTensor> plan = swiftkv_init_plan(config);
  // norm, 3 x q (weight + bias), one leader x k, v (weight + bias).
  ASSERT_EQ(plan.size(), 1 + 3 * 2 + 2 * 2u);
  EXPECT_EQ(plan[0].name, "model.norm_swiftkv.weight");
  EXPECT_EQ(plan[0].sources, std::vector<std::string>{"model.layers.3.input_layernorm.weight"});
  bool found_k = false;
  for (const SwiftkvInitTensor& tensor : plan) {
    if (tensor.name != "model.layers.3.self_attn.k_proj_swiftkv.bias") continue;
    found_k = true;
    EXPECT_EQ(tensor.shape, std::vector<int64_t>{32});
    EXPECT_EQ(tensor.sources, (std::vector<std::string>{"model.layers.3.self_attn.k_proj.bias",
                                                        "model.layers.4.self_attn.k_proj.bias",
                                                        "model.layers.5.self_attn.k_proj.bias"}));
  }
  EXPECT_TRUE(found_k);
  EXPECT_TRUE(swiftkv_init_plan(random_model_config("tiny")).empty());

  std::vector<float> mean = swiftkv_init_tensor({"x", {2}, {"a", "b", "c"}}, [](const std::string& name) {
    return name == "a"   ? std::vector<float>{1, 2}
           : name == "b" ? std::vector<float>{2, 4}
                         : std::vector<float>{3, 9};
  });
  EXPECT_EQ(mean, (std::vector<float>{2, 5}));
  expect_error(
      [] {
        swiftkv_init_tensor({"x", {3}, {"a"}}, [](const std::string&) { return std::vector<float>{1}; });
      },
      {"cannot initialise x: base tensor a has 1 elements, expected 3"});
}

}  // namespace
}  // namespace swiftkv::io
