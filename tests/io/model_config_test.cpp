#include "io/model_config.h"

#include <gtest/gtest.h>

#include <fstream>

#include "common/files.h"
#include "io_test_util.h"
#include "test_paths.h"

namespace swiftkv::io {
namespace {

using nlohmann::json;
using testing::expect_error;

// Llama-3.1-8B-Instruct's config.json (the fields the engine reads).
json llama_8b() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "attention_bias": false,
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
    "hidden_size": 4096, "intermediate_size": 14336, "max_position_embeddings": 131072,
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05, "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0,
    "high_freq_factor": 4.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    "vocab_size": 128256})");
}

// Snowflake/Llama-3.1-SwiftKV-8B-Instruct adds these to the Llama config.
json swiftkv_8b() {
  json config = llama_8b();
  config["model_type"] = "llama_swiftkv";
  config["architectures"] = {"LlamaSwiftKVForCausalLM"};
  config["swiftkv"] = true;
  config["num_key_value_layers"] = 16;
  config["key_value_group_size"] = 1;
  return config;
}

// Qwen2.5-0.5B-Instruct's config.json.
json qwen_05b() {
  return json::parse(R"({
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "bos_token_id": 151643,
    "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 896, "intermediate_size": 4864,
    "max_position_embeddings": 32768, "max_window_layers": 21, "num_attention_heads": 14,
    "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_scaling": null,
    "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": true,
    "use_sliding_window": false, "vocab_size": 151936})");
}

ModelConfig parse(const json& config) { return parse_model_config(config, "config.json"); }

TEST(ModelConfig, ParsesLlama) {
  ModelConfig c = parse(llama_8b());
  EXPECT_EQ(c.model_type, "llama");
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.intermediate_size, 14336);
  EXPECT_EQ(c.num_hidden_layers, 32);
  EXPECT_EQ(c.num_attention_heads, 32);
  EXPECT_EQ(c.num_key_value_heads, 8);
  EXPECT_EQ(c.head_dim, 128);  // hidden_size / heads
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{128001, 128008, 128009}));
  EXPECT_EQ(c.num_key_value_layers, 32);  // absent: SwiftKV off
  EXPECT_EQ(c.key_value_group_size, 1);
  EXPECT_FALSE(c.swiftkv());
  EXPECT_EQ(c.num_kv_caches(), 32);
}

TEST(ModelConfig, ParsesLlamaSwiftKV) {
  ModelConfig c = parse(swiftkv_8b());
  EXPECT_EQ(c.model_type, "llama_swiftkv");
  EXPECT_EQ(c.num_key_value_layers, 16);
  EXPECT_TRUE(c.swiftkv());
  EXPECT_EQ(c.num_kv_caches(), 32);

  json across = swiftkv_8b();
  across["key_value_group_size"] = 4;
  c = parse(across);
  EXPECT_EQ(c.key_value_group_size, 4);
  EXPECT_EQ(c.num_kv_caches(), 16 + 4);
  EXPECT_EQ(c.kv_cache_index(15), 15);
  EXPECT_EQ(c.kv_cache_index(16), 16);
  EXPECT_EQ(c.kv_cache_index(19), 16);
  EXPECT_EQ(c.kv_cache_index(20), 17);
}

TEST(ModelConfig, ParsesQwen2WithBiases) {
  ModelConfig c = parse(qwen_05b());
  EXPECT_EQ(c.model_type, "qwen2");
  EXPECT_TRUE(c.attention_bias);  // implied by the model type
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.rope_scaling.type, "none");
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_EQ(c.eos_token_ids, std::vector<int>{151645});

  json swiftkv = qwen_05b();
  swiftkv["model_type"] = "qwen2_swiftkv";
  swiftkv["num_key_value_layers"] = 12;
  swiftkv["key_value_group_size"] = 2;
  c = parse(swiftkv);
  EXPECT_TRUE(c.attention_bias);
  EXPECT_EQ(c.num_key_value_layers, 12);
  EXPECT_EQ(c.num_kv_caches(), 12 + 6);
}

TEST(ModelConfig, HeadDimMayDifferFromHiddenOverHeads) {
  json config = llama_8b();
  config["head_dim"] = 64;
  EXPECT_EQ(parse(config).head_dim, 64);
}

TEST(ModelConfig, AbsentFieldsTakeTransformersDefaults) {
  json config = llama_8b();
  for (const char* field :
       {"num_key_value_heads", "rms_norm_eps", "rope_theta", "rope_scaling", "tie_word_embeddings",
        "max_position_embeddings", "bos_token_id", "eos_token_id", "attention_bias"})
    config.erase(field);
  ModelConfig c = parse(config);
  EXPECT_EQ(c.num_key_value_heads, 32);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.rope_scaling.type, "none");
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_FALSE(c.bos_token_id.has_value());
  EXPECT_TRUE(c.eos_token_ids.empty());
}

TEST(ModelConfig, RopeScalingVariants) {
  json config = llama_8b();
  config["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};  // older transformers spelling
  RopeScaling linear = parse(config).rope_scaling;
  EXPECT_EQ(linear.type, "linear");
  EXPECT_DOUBLE_EQ(linear.factor, 2.0);

  config["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 4}};
  EXPECT_DOUBLE_EQ(parse(config).rope_scaling.factor, 4.0);

  config["rope_scaling"] = {{"rope_type", "llama3"},
                            {"factor", 32.0},
                            {"low_freq_factor", 1.0},
                            {"high_freq_factor", 4.0},
                            {"original_max_position_embeddings", 8192}};
  RopeScaling llama3 = parse(config).rope_scaling;
  EXPECT_EQ(llama3.type, "llama3");
  EXPECT_DOUBLE_EQ(llama3.factor, 32.0);

  config["rope_scaling"] = nullptr;
  EXPECT_EQ(parse(config).rope_scaling.type, "none");
  config["rope_scaling"] = {{"rope_type", "default"}};
  EXPECT_EQ(parse(config).rope_scaling.type, "none");
}

TEST(ModelConfig, BosAndEosForms) {
  json config = llama_8b();
  config["eos_token_id"] = 2;
  config["bos_token_id"] = 1;
  ModelConfig c = parse(config);
  EXPECT_EQ(c.eos_token_ids, std::vector<int>{2});
  EXPECT_EQ(c.bos_token_id, 1);
  config["eos_token_id"] = {2, 1};
  config["bos_token_id"] = {5};
  c = parse(config);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{2, 1}));
  EXPECT_EQ(c.bos_token_id, 5);
  config["eos_token_id"] = nullptr;
  config["bos_token_id"] = nullptr;
  c = parse(config);
  EXPECT_TRUE(c.eos_token_ids.empty());
  EXPECT_FALSE(c.bos_token_id.has_value());
}

TEST(ModelConfig, NumKeyValueLayersZeroOrLMeansOff) {
  for (int value : {0, 32}) {
    json config = swiftkv_8b();
    config["num_key_value_layers"] = value;
    ModelConfig c = parse(config);
    EXPECT_EQ(c.num_key_value_layers, 32) << value;
    EXPECT_FALSE(c.swiftkv()) << value;
  }
}

struct BadConfig {
  std::string what;
  std::function<void(json&)> change;
  std::vector<std::string> fragments;
};

TEST(ModelConfig, InconsistentConfigsAreRefusedNamingFileAndField) {
  std::vector<BadConfig> cases = {
      {"missing field",
       [](json& c) { c.erase("hidden_size"); },
       {"config.json", "\"hidden_size\" is missing"}},
      {"missing model_type", [](json& c) { c.erase("model_type"); }, {"\"model_type\" is missing"}},
      {"unknown model_type",
       [](json& c) { c["model_type"] = "mistral"; },
       {"config.json", "\"model_type\" is \"mistral\"",
        "supported: llama, llama_swiftkv, qwen2, qwen2_swiftkv"}},
      {"kv heads do not divide",
       [](json& c) { c["num_key_value_heads"] = 5; },
       {"\"num_key_value_heads\" (5) must divide num_attention_heads (32)"}},
      {"heads do not divide hidden",
       [](json& c) {
         c["num_attention_heads"] = 24;
         c["num_key_value_heads"] = 8;
       },
       {"\"num_attention_heads\" (24) must divide hidden_size (4096)"}},
      {"odd head_dim", [](json& c) { c["head_dim"] = 33; }, {"\"head_dim\" must be even"}},
      {"zero size", [](json& c) { c["intermediate_size"] = 0; }, {"\"intermediate_size\" must be positive"}},
      {"negative vocab", [](json& c) { c["vocab_size"] = -5; }, {"\"vocab_size\" must be positive"}},
      {"string for int",
       [](json& c) { c["num_hidden_layers"] = "32"; },
       {"\"num_hidden_layers\" must be an integer, got \"32\""}},
      {"fractional int", [](json& c) { c["hidden_size"] = 4096.5; }, {"\"hidden_size\" must be an integer"}},
      {"huge float int", [](json& c) { c["hidden_size"] = 1e300; }, {"\"hidden_size\" must be an integer"}},
      {"eos id past int32",
       [](json& c) { c["eos_token_id"] = 4294967301LL; },
       {"\"eos_token_id\" must hold token ids in [0, 2^31)"}},
      {"M beyond L",
       [](json& c) { c["num_key_value_layers"] = 33; },
       {"\"num_key_value_layers\" is 33, must be between 1 and num_hidden_layers (32)"}},
      {"negative M", [](json& c) { c["num_key_value_layers"] = -1; }, {"\"num_key_value_layers\" is -1"}},
      {"group does not divide",
       [](json& c) { c["key_value_group_size"] = 3; },
       {"\"key_value_group_size\" (3) must divide", "32 - 16 = 16"}},
      {"zero group",
       [](json& c) { c["key_value_group_size"] = 0; },
       {"\"key_value_group_size\" must be at least 1"}},
      {"unknown rope type",
       [](json& c) {
         c["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
       },
       {"config.json: rope_scaling", "\"rope_type\" is \"yarn\"", "supported: linear, llama3"}},
      {"rope type missing",
       [](json& c) {
         c["rope_scaling"] = {{"factor", 4.0}};
       },
       {"\"rope_type\" is missing"}},
      {"rope factor missing",
       [](json& c) {
         c["rope_scaling"] = {{"type", "linear"}};
       },
       {"\"factor\" is missing"}},
      {"rope scaling not object",
       [](json& c) { c["rope_scaling"] = 8; },
       {"\"rope_scaling\" must be null or an object"}},
      {"llama3 bad freq factors",
       [](json& c) { c["rope_scaling"]["high_freq_factor"] = 0.5; },
       {"\"high_freq_factor\" must be greater than low_freq_factor"}},
      {"eos outside vocab",
       [](json& c) {
         c["eos_token_id"] = {2, 200000};
       },
       {"\"eos_token_id\" is outside the vocabulary"}},
      {"negative eos",
       [](json& c) { c["eos_token_id"] = -1; },
       {"\"eos_token_id\" must hold token ids in [0, 2^31)"}},
      {"activation",
       [](json& c) { c["hidden_act"] = "gelu"; },
       {"\"hidden_act\" is \"gelu\", supported: silu"}},
      {"bool field",
       [](json& c) { c["tie_word_embeddings"] = "yes"; },
       {"\"tie_word_embeddings\" must be true or false"}},
  };
  for (const BadConfig& bad : cases) {
    SCOPED_TRACE(bad.what);
    json config = swiftkv_8b();
    bad.change(config);
    expect_error([&] { parse(config); }, bad.fragments);
  }
  json qwen = qwen_05b();
  qwen["use_sliding_window"] = true;
  expect_error([&] { parse(qwen); }, {"\"use_sliding_window\" is true"});
  expect_error([&] { parse(json::array()); }, {"config.json: expected a JSON object"});
}

TEST(ModelConfig, LoadReadsGenerationConfigAndItsEosWins) {
  auto dir = swiftkv::testing::fresh_temp_dir("io_generation_config");
  write_json_file(dir / "config.json", llama_8b());
  EXPECT_EQ(load_model_config(dir).eos_token_ids, (std::vector<int>{128001, 128008, 128009}));
  EXPECT_FALSE(load_generation_defaults(dir).temperature.has_value());  // no file: nothing set

  write_json_file(dir / "generation_config.json", {{"bos_token_id", 128000},
                                                   {"eos_token_id", 128009},
                                                   {"do_sample", true},
                                                   {"temperature", 0.6},
                                                   {"top_p", 0.9},
                                                   {"top_k", 40},
                                                   {"min_p", 0.05},
                                                   {"repetition_penalty", 1.1}});
  ModelConfig c = load_model_config(dir);
  EXPECT_EQ(c.eos_token_ids, std::vector<int>{128009});
  EXPECT_EQ(c.bos_token_id, 128000);
  GenerationDefaults defaults = load_generation_defaults(dir);
  EXPECT_EQ(defaults.temperature, 0.6);
  EXPECT_EQ(defaults.top_p, 0.9);
  EXPECT_EQ(defaults.top_k, 40);
  EXPECT_EQ(defaults.min_p, 0.05);
  EXPECT_EQ(defaults.repetition_penalty, 1.1);
  EXPECT_EQ(defaults.do_sample, true);

  // A generation_config.json without eos keeps the config's.
  write_json_file(dir / "generation_config.json", {{"temperature", 0.7}});
  EXPECT_EQ(load_model_config(dir).eos_token_ids, (std::vector<int>{128001, 128008, 128009}));
}

TEST(ModelConfig, BrokenJsonNamesTheFile) {
  auto dir = swiftkv::testing::fresh_temp_dir("io_broken_config");
  expect_error([&] { load_model_config(dir); }, {"cannot open", "config.json"});
  std::ofstream(dir / "config.json") << R"({"model_type": "llama", "hidden_size": )";
  expect_error([&] { load_model_config(dir); }, {(dir / "config.json").string(), "is not valid JSON"});
  write_json_file(dir / "config.json", llama_8b());
  std::ofstream(dir / "generation_config.json") << "{\"eos_token_id\": [1,";
  expect_error([&] { load_model_config(dir); },
               {(dir / "generation_config.json").string(), "is not valid JSON"});
  expect_error([&] { load_generation_defaults(dir); }, {"generation_config.json", "is not valid JSON"});
  write_json_file(dir / "generation_config.json", {{"top_p", "high"}});
  expect_error([&] { load_generation_defaults(dir); },
               {"generation_config.json", "\"top_p\" must be a number"});
}

TEST(ModelConfig, ToJsonRoundTripsAndWritesSnowflakeFields) {
  json across = swiftkv_8b();
  across["key_value_group_size"] = 2;
  for (const json& original : {llama_8b(), swiftkv_8b(), across, qwen_05b()}) {
    ModelConfig c = parse(original);
    json written = model_config_to_json(c);
    ModelConfig again = parse(written);
    EXPECT_EQ(model_config_to_json(again), written);
    EXPECT_EQ(again.head_dim, c.head_dim);
    EXPECT_EQ(again.rope_scaling.type, c.rope_scaling.type);
    EXPECT_EQ(again.eos_token_ids, c.eos_token_ids);
    EXPECT_EQ(again.num_key_value_layers, c.num_key_value_layers);
    EXPECT_EQ(again.key_value_group_size, c.key_value_group_size);
    EXPECT_EQ(again.attention_bias, c.attention_bias);
    EXPECT_EQ(again.tie_word_embeddings, c.tie_word_embeddings);
  }
  json swiftkv = model_config_to_json(parse(across));
  EXPECT_EQ(swiftkv["model_type"], "llama_swiftkv");
  EXPECT_EQ(swiftkv["architectures"], json::array({"LlamaSwiftKVForCausalLM"}));
  EXPECT_EQ(swiftkv["swiftkv"], true);
  EXPECT_EQ(swiftkv["num_key_value_layers"], 16);
  EXPECT_EQ(swiftkv["key_value_group_size"], 2);
  EXPECT_EQ(swiftkv["rope_scaling"]["rope_type"], "llama3");

  json plain = model_config_to_json(parse(llama_8b()));
  EXPECT_EQ(plain["model_type"], "llama");
  EXPECT_EQ(plain["architectures"], json::array({"LlamaForCausalLM"}));
  EXPECT_FALSE(plain.contains("swiftkv"));
  EXPECT_FALSE(plain.contains("num_key_value_layers"));
  // A SwiftKV model whose M was set to L is written as the plain model it is.
  json off = swiftkv_8b();
  off["num_key_value_layers"] = 32;
  EXPECT_EQ(model_config_to_json(parse(off))["model_type"], "llama");
}

}  // namespace
}  // namespace swiftkv::io
