// swiftkv convert: SWIFTKV.md's initialisation written in Snowflake's checkpoint layout, base
// tensors bit for bit, sharding, and every way to ask for an impossible SwiftKV model.
#include "io/convert.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>

#include "common/bf16.h"
#include "common/files.h"
#include "io/checkpoint.h"
#include "io/random_model.h"
#include "io/safetensors.h"
#include "io_test_util.h"
#include "model/random_checkpoint.h"
#include "test_paths.h"

namespace swiftkv::io {
namespace {

namespace fs = std::filesystem;
using testing::expect_error;

// A fresh directory of this process's own: test programs of several build trees may run at once.
fs::path unique_dir(const std::string& name) {
  return swiftkv::testing::fresh_temp_dir(name + "_" + std::to_string(::getpid()));
}

std::string layer(int64_t l, const std::string& rest) {
  return "model.layers." + std::to_string(l) + "." + rest;
}

bool same_bytes(const TensorInfo& a, const TensorInfo& b) {
  return a.dtype == b.dtype && a.shape == b.shape && a.nbytes == b.nbytes &&
         std::memcmp(a.data, b.data, a.nbytes) == 0;
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A base checkpoint whose every tensor differs (norms included, so copying the wrong layer's
// norm shows), plus the files a Hugging Face repository carries besides weights.
fs::path random_base(const std::string& name, bool bias = false) {
  fs::path dir = unique_dir("convert_" + name) / "base";
  swiftkv::testing::write_random_checkpoint(swiftkv::testing::tiny_config(6, 6, 1, bias), dir, 11);
  write_text(dir / "tokenizer.json", "{\"version\": \"1.0\"}");
  write_text(dir / "tokenizer_config.json", "{\"add_bos_token\": true}");
  write_text(dir / "generation_config.json", "{\"bos_token_id\": 1, \"eos_token_id\": 2}");
  write_text(dir / "pytorch_model.bin", "stale weights");
  fs::create_directories(dir / "original");
  write_text(dir / "original" / "consolidated.00.pth", "more weights");
  return dir;
}

ConvertOptions layers_option(int64_t m, int64_t g = 1) {
  ConvertOptions options;
  options.swiftkv_layers = m;
  options.group_size = g;
  return options;
}

TEST(Convert, G1CopiesBaseBitForBitAndInitialisesAsSwiftkvMdSays) {
  const fs::path base = random_base("g1"), out = base.parent_path() / "swiftkv";
  ConvertResult result = convert_to_swiftkv(base, out, layers_option(3));

  // Config: the base's fields plus Snowflake's five.
  nlohmann::json config = read_json_file(out / "config.json"),
                 base_config = read_json_file(base / "config.json");
  EXPECT_EQ(config["model_type"], "llama_swiftkv");
  EXPECT_EQ(config["architectures"], nlohmann::json::array({"LlamaSwiftKVForCausalLM"}));
  EXPECT_EQ(config["swiftkv"], true);
  EXPECT_EQ(config["num_key_value_layers"], 3);
  EXPECT_EQ(config["key_value_group_size"], 1);
  for (const auto& [field, value] : base_config.items())
    if (field != "model_type" && field != "architectures") {
      EXPECT_EQ(config[field], value) << field;
    }
  EXPECT_EQ(result.config.num_key_value_layers, 3);

  // Small non-weight files copied; other weights and folders not.
  for (const char* file : {"tokenizer.json", "tokenizer_config.json", "generation_config.json"})
    EXPECT_EQ(read_text(out / file), read_text(base / file)) << file;
  EXPECT_FALSE(fs::exists(out / "pytorch_model.bin"));
  EXPECT_FALSE(fs::exists(out / "original"));
  EXPECT_EQ(result.skipped_files, (std::vector<std::string>{"original", "pytorch_model.bin"}));

  TensorStore in = TensorStore::open(base), converted = TensorStore::open(out);
  EXPECT_EQ(converted.metadata().at("format"), "pt");
  ModelConfig loaded = load_model_config(out);
  EXPECT_NO_THROW(validate_checkpoint(loaded, converted));
  for (const std::string& name : in.names()) {
    ASSERT_TRUE(converted.contains(name)) << name;
    EXPECT_TRUE(same_bytes(in.at(name), converted.at(name))) << name << " changed";
  }
  EXPECT_EQ(result.copied_tensors, static_cast<int64_t>(in.names().size()));
  // 1 norm + 3 later layers x (q, k, v).
  EXPECT_EQ(result.new_tensors, 10);
  EXPECT_EQ(converted.names().size(), in.names().size() + 10);

  // G = 1: layer M's K/V projection and norm are the teacher's exactly, so layer M's K/V are too.
  EXPECT_TRUE(
      same_bytes(converted.at("model.norm_swiftkv.weight"), in.at(layer(3, "input_layernorm.weight"))));
  EXPECT_FALSE(
      same_bytes(converted.at("model.norm_swiftkv.weight"), in.at(layer(2, "input_layernorm.weight"))));
  for (int64_t l = 3; l < 6; ++l)
    for (const char* projection : {"q_proj", "k_proj", "v_proj"})
      EXPECT_TRUE(
          same_bytes(converted.at(layer(l, std::string("self_attn.") + projection + "_swiftkv.weight")),
                     in.at(layer(l, std::string("self_attn.") + projection + ".weight"))))
          << l << " " << projection;
  EXPECT_FALSE(converted.contains(layer(2, "self_attn.q_proj_swiftkv.weight")));
}

TEST(Convert, G2KvProjectionsAreTheGroupMeanWeightsAndBiasesInBf16) {
  // tiny-qwen2: biases, tied embeddings, bf16 storage.
  fs::path dir = unique_dir("convert_g2");
  write_random_model("tiny-qwen2", std::nullopt, 1, dir / "base", 5, DType::BF16);
  ConvertResult result = convert_to_swiftkv(dir / "base", dir / "out", layers_option(2, 2));
  EXPECT_EQ(result.config.model_type, "qwen2_swiftkv");
  EXPECT_EQ(read_json_file(dir / "out/config.json")["architectures"][0], "Qwen2SwiftKVForCausalLM");
  TensorStore in = TensorStore::open(dir / "base"), out = TensorStore::open(dir / "out");
  EXPECT_NO_THROW(validate_checkpoint(load_model_config(dir / "out"), out));
  for (const std::string& name : out.names()) EXPECT_EQ(out.at(name).dtype, DType::BF16) << name;
  for (const std::string& name : in.names()) EXPECT_TRUE(same_bytes(in.at(name), out.at(name))) << name;

  // Leaders 2 and 4 own k/v_proj_swiftkv = mean of the group's two layers, rounded to bf16 once.
  for (int64_t leader : {2, 4}) {
    for (const char* projection : {"k_proj", "v_proj"}) {
      for (const char* part : {".weight", ".bias"}) {
        const std::string suffix = std::string("self_attn.") + projection;
        std::vector<float> a = in.read_f32(layer(leader, suffix + part));
        std::vector<float> b = in.read_f32(layer(leader + 1, suffix + part));
        std::vector<float> mean = out.read_f32(layer(leader, suffix + "_swiftkv" + part));
        ASSERT_EQ(mean.size(), a.size());
        size_t differs = 0;
        for (size_t i = 0; i < a.size(); ++i) {
          ASSERT_EQ(mean[i], bf16_to_f32(f32_to_bf16(static_cast<float>((double(a[i]) + b[i]) / 2))))
              << leader << suffix << part << " " << i;
          differs += mean[i] != a[i];
        }
        EXPECT_GT(differs, a.size() / 2) << "the group's layers should differ";
      }
      EXPECT_FALSE(
          out.contains(layer(leader + 1, std::string("self_attn.") + projection + "_swiftkv.weight")));
    }
  }
  // Every later layer keeps its own q_proj_swiftkv (copied, bias too).
  for (int64_t l = 2; l < 6; ++l) {
    EXPECT_TRUE(same_bytes(out.at(layer(l, "self_attn.q_proj_swiftkv.weight")),
                           in.at(layer(l, "self_attn.q_proj.weight"))));
    EXPECT_TRUE(same_bytes(out.at(layer(l, "self_attn.q_proj_swiftkv.bias")),
                           in.at(layer(l, "self_attn.q_proj.bias"))));
  }
}

TEST(Convert, DropTeacherLeavesOutTheLaterLayersOriginalQkv) {
  const fs::path base = random_base("drop", /*bias=*/true), out = base.parent_path() / "out";
  ConvertOptions options = layers_option(4);
  options.drop_teacher = true;
  ConvertResult result = convert_to_swiftkv(base, out, options);
  EXPECT_EQ(result.dropped_tensors, 2 * 3 * 2);  // layers 4, 5 x q/k/v x weight/bias
  ModelConfig config = load_model_config(out);
  TensorStore store = TensorStore::open(out);
  EXPECT_NO_THROW(validate_checkpoint(config, store));
  for (const ExpectedTensor& tensor : teacher_tensors(config))
    EXPECT_FALSE(store.contains(tensor.name)) << tensor.name;
  EXPECT_TRUE(store.contains(layer(3, "self_attn.k_proj.weight")));
  EXPECT_TRUE(store.contains(layer(4, "self_attn.k_proj_swiftkv.bias")));
}

TEST(Convert, ShardedInputAndShardedOutput) {
  // Base split over two shards with an index, as Hugging Face writes large models.
  const fs::path single = random_base("sharded"), dir = single.parent_path(), base = dir / "sharded_base";
  fs::create_directories(base);
  for (const char* file : {"config.json", "tokenizer.json"}) fs::copy_file(single / file, base / file);
  TensorStore source = TensorStore::open(single);
  std::vector<std::string> names = source.names();
  std::vector<std::vector<float>> values;
  for (const std::string& name : names) values.push_back(source.read_f32(name));
  nlohmann::json weight_map;
  for (int shard = 0; shard < 2; ++shard) {
    std::vector<TensorToWrite> tensors;
    const std::string file = "model-0000" + std::to_string(shard + 1) + "-of-00002.safetensors";
    for (size_t i = shard; i < names.size(); i += 2) {
      tensors.push_back({names[i], DType::F32, source.at(names[i]).shape, values[i].data()});
      weight_map[names[i]] = file;
    }
    write_safetensors(base / file, tensors);
  }
  write_json_file(base / "model.safetensors.index.json",
                  {{"metadata", nlohmann::json::object()}, {"weight_map", weight_map}});

  ConvertOptions options = layers_option(2);
  options.max_shard_bytes = 40'000;  // the model is ~200 KB
  ConvertResult result = convert_to_swiftkv(base, dir / "out", options);
  EXPECT_GT(result.shards, 3);
  EXPECT_FALSE(fs::exists(dir / "out/model.safetensors"));
  char last[64];
  std::snprintf(last, sizeof last, "out/model-%05lld-of-%05lld.safetensors", (long long)result.shards,
                (long long)result.shards);
  EXPECT_TRUE(fs::exists(dir / last)) << last;
  nlohmann::json index = read_json_file(dir / "out/model.safetensors.index.json");
  EXPECT_EQ(index["metadata"]["total_size"], result.tensor_bytes);
  TensorStore out = TensorStore::open(dir / "out");
  EXPECT_NO_THROW(validate_checkpoint(load_model_config(dir / "out"), out));
  for (const std::string& name : names) EXPECT_TRUE(same_bytes(source.at(name), out.at(name))) << name;
  EXPECT_TRUE(same_bytes(out.at("model.norm_swiftkv.weight"), source.at(layer(2, "input_layernorm.weight"))));
  EXPECT_EQ(result.skipped_files, std::vector<std::string>{});
  EXPECT_EQ(result.copied_files, std::vector<std::string>{"tokenizer.json"});

  // The default shard size keeps a small model in one file.
  convert_to_swiftkv(base, dir / "one", layers_option(2));
  EXPECT_TRUE(fs::exists(dir / "one/model.safetensors"));
  EXPECT_FALSE(fs::exists(dir / "one/model.safetensors.index.json"));
}

TEST(Convert, SkipFractionRoundsToTheNearestMultipleOfGTiesToFewerSkipped) {
  EXPECT_EQ(swiftkv_layers_for_skip_fraction(32, 0.5, 1), 16);  // Snowflake's 50% SwiftKV
  EXPECT_EQ(swiftkv_layers_for_skip_fraction(32, 0.25, 4), 24);
  EXPECT_EQ(swiftkv_layers_for_skip_fraction(5, 0.5, 1), 3);   // 2.5 -> 2 skipped
  EXPECT_EQ(swiftkv_layers_for_skip_fraction(5, 0.6, 1), 2);   // 3 skipped
  EXPECT_EQ(swiftkv_layers_for_skip_fraction(5, 0.5, 2), 3);   // 2.5 -> nearest multiple of 2 is 2
  EXPECT_EQ(swiftkv_layers_for_skip_fraction(6, 0.5, 2), 4);   // 3 is a tie between 2 and 4 -> 2
  EXPECT_EQ(swiftkv_layers_for_skip_fraction(10, 0.3, 1), 7);  // 0.3 * 10 = 3.0000000000000004
  EXPECT_EQ(swiftkv_layers_for_skip_fraction(16, 0.4, 4), 8);  // 6.4 -> 8
  expect_error([] { swiftkv_layers_for_skip_fraction(32, 0.0, 1); },
               {"--skip-fraction must be strictly between 0 and 1, got 0"});
  expect_error([] { swiftkv_layers_for_skip_fraction(32, 1.0, 1); }, {"strictly between 0 and 1, got 1"});
  expect_error([] { swiftkv_layers_for_skip_fraction(32, 0.01, 1); },
               {"0.01 of 32 layers = 0.32 skipped layers", "is 0", "no layer would be skipped"});
  EXPECT_EQ(swiftkv_layers_for_skip_fraction(8, 0.3, 4), 4);  // 2.4 is nearer 4 than 0
  expect_error([] { swiftkv_layers_for_skip_fraction(8, 0.2, 4); },
               {"multiple of --group-size 4, is 0", "no layer would be skipped"});
  expect_error([] { swiftkv_layers_for_skip_fraction(5, 0.95, 1); },
               {"is 5", "no layer would be left", "M must be at least 1"});
}

TEST(Convert, RefusesImpossibleLayoutsWithTheReason) {
  const fs::path base = random_base("bad"), dir = base.parent_path();
  auto convert = [&](ConvertOptions options) { convert_to_swiftkv(base, dir / "out", options); };
  expect_error([&] { convert(layers_option(0)); },
               {"--swiftkv-layers 0 is out of range", "6 layers", "between 1 and 5"});
  expect_error([&] { convert(layers_option(6)); }, {"--swiftkv-layers 6 is out of range"});
  expect_error([&] { convert(layers_option(-1)); }, {"--swiftkv-layers -1 is out of range"});
  expect_error([&] { convert(layers_option(3, 2)); },
               {"--group-size 2 must divide the number of SwiftKV layers L - M = 6 - 3 = 3"});
  expect_error([&] { convert(layers_option(3, 0)); }, {"--group-size must be at least 1, got 0"});
  ConvertOptions both = layers_option(3);
  both.skip_fraction = 0.5;
  expect_error([&] { convert(both); }, {"exactly one of --swiftkv-layers M and --skip-fraction F"});
  expect_error([&] { convert(ConvertOptions{}); }, {"exactly one of"});
  ConvertOptions fraction;
  fraction.skip_fraction = 0.5;
  fraction.group_size = 2;  // 3 skipped -> a tie between 2 and 4 -> 2, M = 4
  EXPECT_FALSE(fs::exists(dir / "out"));
  EXPECT_EQ(convert_to_swiftkv(base, dir / "frac", fraction).config.num_key_value_layers, 4);

  // Already SwiftKV: refused, whatever the flags.
  expect_error([&] { convert_to_swiftkv(dir / "frac", dir / "again", layers_option(2)); },
               {"already a SwiftKV checkpoint", "llama_swiftkv", "convert its base model instead"});
  // Output exists and is not empty: nothing overwritten.
  expect_error([&] { convert_to_swiftkv(base, dir / "frac", layers_option(2)); }, {"already exists"});
  EXPECT_EQ(load_model_config(dir / "frac").num_key_value_layers, 4);
  expect_error([&] { convert_to_swiftkv(dir / "nowhere", dir / "out2", layers_option(2)); },
               {"no config.json in", "nowhere"});
  // A checkpoint that does not match its config is refused before anything is written.
  fs::remove(base / "model.safetensors");
  expect_error([&] { convert(layers_option(2)); }, {"no model.safetensors"});
  EXPECT_FALSE(fs::exists(dir / "out"));
  // No staging directory left behind by any of the failures.
  for (const auto& entry : fs::directory_iterator(dir))
    EXPECT_EQ(entry.path().filename().string().find(".tmp-"), std::string::npos) << entry.path();
}

}  // namespace
}  // namespace swiftkv::io
