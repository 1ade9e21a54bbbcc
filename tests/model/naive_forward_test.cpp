// Checks of the float64 reference forward on what can be known without the engine: exact
// identities of the SwiftKV transformation, AcrossKV sharing, causality, RoPE scaling by
// hand, and a real trained model (stories260K) reproducing its published greedy output.
#include "naive_forward.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/files.h"
#include "io/llama2c.h"
#include "io/model_config.h"
#include "io/safetensors.h"
#include "test_paths.h"

namespace swiftkv::testing {
namespace {

using Tensors = std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>>;

io::ModelConfig small_config(int64_t layers, int64_t swiftkv_layers, int64_t group_size, bool bias) {
  io::ModelConfig c;
  c.model_type =
      swiftkv_layers < layers ? (bias ? "qwen2_swiftkv" : "llama_swiftkv") : (bias ? "qwen2" : "llama");
  c.vocab_size = 37;
  c.hidden_size = 24;
  c.intermediate_size = 40;
  c.num_hidden_layers = layers;
  c.num_attention_heads = 6;
  c.num_key_value_heads = 2;
  c.head_dim = 4;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000;
  c.attention_bias = bias;
  c.tie_word_embeddings = false;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  c.num_key_value_layers = swiftkv_layers;
  c.key_value_group_size = group_size;
  return c;
}

// Base (teacher) tensors, named as in Hugging Face Llama / Qwen2, listed here rather than
// taken from src/io so that the reference's tests do not share the engine's assumptions.
Tensors random_base(const io::ModelConfig& c, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Tensors tensors;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float mean, float scale) {
    int64_t numel = 1;
    for (int64_t dim : shape) numel *= dim;
    std::vector<float> values(static_cast<size_t>(numel));
    for (float& value : values) value = mean + scale * normal(rng);
    tensors[name] = {std::move(shape), std::move(values)};
  };
  const int64_t H = c.hidden_size, F = c.intermediate_size, q_rows = c.num_attention_heads * c.head_dim,
                kv_rows = c.num_key_value_heads * c.head_dim;
  const float s = 1.0f / std::sqrt(static_cast<float>(H));
  add("model.embed_tokens.weight", {c.vocab_size, H}, 0.0f, 1.0f);
  add("model.norm.weight", {H}, 1.0f, 0.2f);
  if (!c.tie_word_embeddings) add("lm_head.weight", {c.vocab_size, H}, 0.0f, s);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {H}, 1.0f, 0.2f);
    add(p + "post_attention_layernorm.weight", {H}, 1.0f, 0.2f);
    add(p + "self_attn.q_proj.weight", {q_rows, H}, 0.0f, 2 * s);
    add(p + "self_attn.k_proj.weight", {kv_rows, H}, 0.0f, 2 * s);
    add(p + "self_attn.v_proj.weight", {kv_rows, H}, 0.0f, s);
    if (c.attention_bias) {
      add(p + "self_attn.q_proj.bias", {q_rows}, 0.0f, 0.3f);
      add(p + "self_attn.k_proj.bias", {kv_rows}, 0.0f, 0.3f);
      add(p + "self_attn.v_proj.bias", {kv_rows}, 0.0f, 0.3f);
    }
    add(p + "self_attn.o_proj.weight", {H, q_rows}, 0.0f, 1.0f / std::sqrt(static_cast<float>(q_rows)));
    add(p + "mlp.gate_proj.weight", {F, H}, 0.0f, s);
    add(p + "mlp.up_proj.weight", {F, H}, 0.0f, s);
    add(p + "mlp.down_proj.weight", {H, F}, 0.0f, 1.0f / std::sqrt(static_cast<float>(F)));
  }
  return tensors;
}

// SWIFTKV.md "Transformation": norm_swiftkv <- layer M's input_layernorm, q_proj_swiftkv <-
// q_proj, group leaders' k/v_proj_swiftkv <- mean over the group (weights and biases).
void add_transformed_swiftkv(const io::ModelConfig& c, Tensors& tensors) {
  const int64_t L = c.num_hidden_layers, M = c.num_key_value_layers, G = c.key_value_group_size;
  auto layer = [](int64_t l) { return "model.layers." + std::to_string(l) + ".self_attn."; };
  tensors["model.norm_swiftkv.weight"] =
      tensors["model.layers." + std::to_string(M) + ".input_layernorm.weight"];
  std::vector<std::string> kinds = {"weight"};
  if (c.attention_bias) kinds.push_back("bias");
  for (const auto& kind : kinds) {
    for (int64_t j = M; j < L; ++j)
      tensors[layer(j) + "q_proj_swiftkv." + kind] = tensors[layer(j) + "q_proj." + kind];
    for (int64_t leader = M; leader < L; leader += G) {
      for (const std::string proj : {"k_proj", "v_proj"}) {
        auto mean = tensors[layer(leader) + proj + "." + kind];
        for (int64_t j = leader + 1; j < leader + G; ++j) {
          const auto& other = tensors[layer(j) + proj + "." + kind].second;
          for (size_t i = 0; i < other.size(); ++i) mean.second[i] += other[i];
        }
        for (float& value : mean.second) value /= static_cast<float>(G);
        tensors[layer(leader) + proj + "_swiftkv." + kind] = mean;
      }
    }
  }
}

// SwiftKV tensors independent of the teacher's, as after distillation.
void add_random_swiftkv(const io::ModelConfig& c, Tensors& tensors, uint64_t seed) {
  add_transformed_swiftkv(c, tensors);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.3f);
  for (auto& [name, tensor] : tensors) {
    if (name.find("swiftkv") == std::string::npos) continue;
    for (float& value : tensor.second) value += normal(rng);
  }
}

void drop_teacher_qkv(const io::ModelConfig& c, Tensors& tensors) {
  for (int64_t l = c.num_key_value_layers; l < c.num_hidden_layers; ++l) {
    for (const std::string proj : {"q_proj", "k_proj", "v_proj"}) {
      for (const std::string kind : {".weight", ".bias"}) {
        tensors.erase("model.layers." + std::to_string(l) + ".self_attn." + proj + kind);
      }
    }
  }
}

std::filesystem::path write_checkpoint(const std::string& name, const io::ModelConfig& c,
                                       const Tensors& tensors) {
  const auto dir = fresh_temp_dir("naive_" + name);
  write_json_file(dir / "config.json", io::model_config_to_json(c));
  std::vector<io::TensorToWrite> to_write;
  for (const auto& [tensor_name, tensor] : tensors) {
    to_write.push_back({tensor_name, io::DType::F32, tensor.first, tensor.second.data()});
  }
  io::write_safetensors(dir / "model.safetensors", to_write);
  return dir;
}

std::vector<int32_t> some_tokens(size_t count, int32_t vocab) {
  std::vector<int32_t> tokens;
  for (size_t t = 0; t < count; ++t) tokens.push_back(static_cast<int32_t>((t * 11 + 3) % vocab));
  return tokens;
}

double max_abs_difference(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0.0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  return worst;
}

TEST(NaiveForwardTest, RopeFrequenciesByHand) {
  io::ModelConfig c;
  c.head_dim = 8;
  c.rope_theta = 10000;  // unscaled: 1, 0.1, 0.01, 0.001
  auto f = rope_inverse_frequencies(c);
  ASSERT_EQ(f.size(), 4u);
  EXPECT_NEAR(f[0], 1.0, 1e-15);
  EXPECT_NEAR(f[1], 0.1, 1e-15);
  EXPECT_NEAR(f[2], 0.01, 1e-15);
  EXPECT_NEAR(f[3], 0.001, 1e-15);

  c.rope_scaling = {"linear", 4.0, 1.0, 4.0, 8192};
  f = rope_inverse_frequencies(c);
  EXPECT_NEAR(f[1], 0.025, 1e-15);
  EXPECT_NEAR(f[3], 0.00025, 1e-15);

  // llama3, factor 4, low 1, high 4, original context 64: wavelengths 2*pi*{1,10,100,1000};
  // high-frequency limit 64/4 = 16, low-frequency limit 64/1 = 64.
  c.rope_scaling = {"llama3", 4.0, 1.0, 4.0, 64};
  f = rope_inverse_frequencies(c);
  EXPECT_NEAR(f[0], 1.0, 1e-15);  // 6.28 < 16: unchanged
  // 62.83 is between 16 and 64: smooth = (64/62.832 - 1) / 3 = 0.0061972,
  // (1 - smooth) * 0.1 / 4 + smooth * 0.1 = 0.02546479.
  const double smooth = (64.0 / (2 * std::numbers::pi * 10) - 1.0) / 3.0;
  EXPECT_NEAR(smooth, 0.0061972, 1e-7);
  EXPECT_NEAR(f[1], 0.025 + 0.075 * smooth, 1e-15);
  EXPECT_NEAR(f[1], 0.02546479, 1e-8);
  EXPECT_NEAR(f[2], 0.0025, 1e-15);  // 628 > 64: divided by the factor
  EXPECT_NEAR(f[3], 0.00025, 1e-15);

  c.rope_scaling.type = "yarn";
  EXPECT_THROW(rope_inverse_frequencies(c), Error);
}

// SWIFTKV.md: "With G=1, layer M then reproduces the teacher's K/V exactly".
TEST(NaiveForwardTest, TransformedLayerMReproducesTeacherKV) {
  for (bool bias : {false, true}) {
    SCOPED_TRACE(bias ? "with biases" : "without biases");
    const auto c = small_config(4, 2, 1, bias);
    auto tensors = random_base(c, 1);
    add_transformed_swiftkv(c, tensors);
    const NaiveModel model(write_checkpoint(bias ? "layerM_bias" : "layerM", c, tensors));
    const auto tokens = some_tokens(12, 37);
    const NaiveTrace teacher = model.trace(tokens, ForwardMode::Teacher);
    const NaiveTrace student = model.trace(tokens, ForwardMode::SwiftKV);
    for (size_t t = 0; t < tokens.size(); ++t) {
      for (int64_t l = 0; l <= 2; ++l) {
        EXPECT_LE(max_abs_difference(teacher.keys[l][t], student.keys[l][t]), 1e-12) << "layer " << l;
        EXPECT_LE(max_abs_difference(teacher.values[l][t], student.values[l][t]), 1e-12) << "layer " << l;
      }
      // Layer M's q_proj_swiftkv is the teacher's too, so its output is the teacher's...
      EXPECT_LE(max_abs_difference(teacher.hidden[3][t], student.hidden[3][t]), 1e-12);
      // ...but layer M+1 applies its projection to the wrong input (s, not its own norm).
      EXPECT_GT(max_abs_difference(teacher.keys[3][t], student.keys[3][t]), 1e-3);
    }
    EXPECT_GT(max_abs_difference(teacher.logits.back(), student.logits.back()), 1e-3);
  }
}

// With M = L-1 and the transformation, the only SwiftKV layer computes exactly what the
// teacher's last layer does, so every logit matches: checks norm_swiftkv's input (h_M) and
// q_proj_swiftkv's wiring end to end.
TEST(NaiveForwardTest, TransformedLastLayerOnlyEqualsTeacher) {
  for (bool bias : {false, true}) {
    const auto c = small_config(3, 2, 1, bias);
    auto tensors = random_base(c, 2);
    add_transformed_swiftkv(c, tensors);
    const NaiveModel model(write_checkpoint(bias ? "last_bias" : "last", c, tensors));
    const auto tokens = some_tokens(20, 37);
    const auto teacher = model.forward(tokens, ForwardMode::Teacher);
    const auto student = model.forward(tokens, ForwardMode::SwiftKV);
    for (size_t t = 0; t < tokens.size(); ++t) EXPECT_LE(max_abs_difference(teacher[t], student[t]), 1e-12);

    // SwiftKV never reads the teacher's q/k/v of layers >= M, and does read q_proj_swiftkv.
    auto perturbed = tensors;
    for (const std::string proj : {"q_proj", "k_proj", "v_proj"}) {
      for (float& value : perturbed["model.layers.2.self_attn." + proj + ".weight"].second) value *= -0.5f;
    }
    const NaiveModel other_teacher(
        write_checkpoint(bias ? "last_teacher_bias" : "last_teacher", c, perturbed));
    EXPECT_EQ(other_teacher.forward(tokens, ForwardMode::SwiftKV), student);
    EXPECT_GT(max_abs_difference(other_teacher.forward(tokens, ForwardMode::Teacher).back(), teacher.back()),
              1e-3);
    for (float& value : perturbed["model.layers.2.self_attn.q_proj_swiftkv.weight"].second) value *= -0.5f;
    const NaiveModel other_query(write_checkpoint(bias ? "last_query_bias" : "last_query", c, perturbed));
    EXPECT_GT(max_abs_difference(other_query.forward(tokens, ForwardMode::SwiftKV).back(), student.back()),
              1e-3);
  }
}

// Keys/values of later layers come from the group leader's projection of
// s = rmsnorm(h_M; norm_swiftkv); at position 0 RoPE is the identity, so they can be
// recomputed here from the raw tensors.
TEST(NaiveForwardTest, AcrossKVLayersReadTheirLeadersSingleInputKV) {
  for (bool bias : {false, true}) {
    SCOPED_TRACE(bias ? "with biases" : "without biases");
    const auto c = small_config(6, 2, 2, bias);
    auto tensors = random_base(c, 3);
    add_random_swiftkv(c, tensors, 4);
    const NaiveModel model(write_checkpoint(bias ? "across_bias" : "across", c, tensors));
    const auto tokens = some_tokens(9, 37);
    const NaiveTrace trace = model.trace(tokens, ForwardMode::SwiftKV);

    const auto& h_M = trace.hidden[2][0];
    const auto& norm = tensors.at("model.norm_swiftkv.weight").second;
    double mean_square = 0.0;
    for (double x : h_M) mean_square += x * x / static_cast<double>(h_M.size());
    std::vector<double> s(h_M.size());
    for (size_t i = 0; i < s.size(); ++i) s[i] = h_M[i] / std::sqrt(mean_square + c.rms_norm_eps) * norm[i];
    for (int64_t j = 2; j < 6; ++j) {
      const int64_t leader = 2 + 2 * ((j - 2) / 2);
      for (const std::string proj : {"k_proj_swiftkv", "v_proj_swiftkv"}) {
        const std::string p = "model.layers." + std::to_string(leader) + ".self_attn." + proj;
        const auto& weight = tensors.at(p + ".weight").second;
        std::vector<double> expected(8, 0.0);
        for (size_t o = 0; o < 8; ++o) {
          if (bias) expected[o] = tensors.at(p + ".bias").second[o];
          for (size_t i = 0; i < s.size(); ++i) expected[o] += weight[o * s.size() + i] * s[i];
        }
        const auto& actual = proj[0] == 'k' ? trace.keys[j][0] : trace.values[j][0];
        EXPECT_LE(max_abs_difference(actual, expected), 1e-12) << "layer " << j << " " << proj;
      }
    }
    // Different groups have different leaders.
    EXPECT_GT(max_abs_difference(trace.keys[2][5], trace.keys[4][5]), 1e-3);
  }
}

TEST(NaiveForwardTest, LaterPositionsNeverChangeEarlierLogits) {
  const auto c = small_config(4, 2, 1, false);
  auto tensors = random_base(c, 5);
  add_random_swiftkv(c, tensors, 6);
  const NaiveModel model(write_checkpoint("causal", c, tensors));
  const auto tokens = some_tokens(15, 37);
  const std::vector<int32_t> prefix(tokens.begin(), tokens.begin() + 10);
  for (ForwardMode mode : {ForwardMode::Teacher, ForwardMode::SwiftKV}) {
    const auto full = model.forward(tokens, mode);
    const auto part = model.forward(prefix, mode);
    ASSERT_EQ(full.size(), 15u);
    for (size_t t = 0; t < prefix.size(); ++t) EXPECT_LE(max_abs_difference(full[t], part[t]), 1e-12);
  }
}

TEST(NaiveForwardTest, ZeroBiasesEqualNoBiasesAndNonZeroOnesMatter) {
  const auto plain_config = small_config(2, 2, 1, false);
  auto biased_config = plain_config;
  biased_config.model_type = "qwen2";
  biased_config.attention_bias = true;
  const auto plain = random_base(plain_config, 7);
  auto biased = plain;
  for (int64_t l = 0; l < 2; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".self_attn.";
    biased[p + "q_proj.bias"] = {{24}, std::vector<float>(24, 0.0f)};
    biased[p + "k_proj.bias"] = {{8}, std::vector<float>(8, 0.0f)};
    biased[p + "v_proj.bias"] = {{8}, std::vector<float>(8, 0.0f)};
  }
  const auto tokens = some_tokens(6, 37);
  const auto expected =
      NaiveModel(write_checkpoint("nobias", plain_config, plain)).forward(tokens, ForwardMode::Teacher);
  auto zero =
      NaiveModel(write_checkpoint("zerobias", biased_config, biased)).forward(tokens, ForwardMode::Teacher);
  for (size_t t = 0; t < tokens.size(); ++t) EXPECT_LE(max_abs_difference(expected[t], zero[t]), 1e-12);

  biased["model.layers.1.self_attn.v_proj.bias"].second[3] = 1.0f;
  auto shifted =
      NaiveModel(write_checkpoint("vbias", biased_config, biased)).forward(tokens, ForwardMode::Teacher);
  EXPECT_GT(max_abs_difference(expected[0], shifted[0]), 1e-3);
}

TEST(NaiveForwardTest, TeacherModeNeedsTeacherTensors) {
  const auto c = small_config(4, 2, 1, false);
  auto tensors = random_base(c, 8);
  add_random_swiftkv(c, tensors, 9);
  drop_teacher_qkv(c, tensors);
  const NaiveModel model(write_checkpoint("noteacher", c, tensors));
  EXPECT_FALSE(model.has_teacher());
  EXPECT_THROW(model.forward({1, 2}, ForwardMode::Teacher), Error);
  EXPECT_EQ(model.forward({1, 2}, ForwardMode::SwiftKV).size(), 2u);
  EXPECT_THROW(model.forward({1, 37}, ForwardMode::SwiftKV), Error);
}

TEST(NaiveForwardTest, MissingSwiftKVTensorIsReported) {
  const auto c = small_config(4, 2, 1, false);
  auto tensors = random_base(c, 10);
  add_random_swiftkv(c, tensors, 11);
  tensors.erase("model.layers.3.self_attn.k_proj_swiftkv.weight");
  try {
    NaiveModel model(write_checkpoint("missing", c, tensors));
    ADD_FAILURE() << "loaded a checkpoint without a k_proj_swiftkv";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.3.self_attn.k_proj_swiftkv.weight"), std::string::npos)
        << e.what();
  }
}

// tok512.bin pieces, decoded the way llama2.c's decode() does: a leading space is dropped
// after BOS, and <0xHH> pieces are raw bytes.
std::vector<std::string> read_tok512_pieces(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  int32_t max_length = 0;
  in.read(reinterpret_cast<char*>(&max_length), 4);
  std::vector<std::string> pieces;
  for (int i = 0; i < 512; ++i) {
    float score = 0;
    int32_t length = 0;
    in.read(reinterpret_cast<char*>(&score), 4);
    in.read(reinterpret_cast<char*>(&length), 4);
    std::string piece(static_cast<size_t>(length), '\0');
    in.read(piece.data(), length);
    pieces.push_back(piece);
  }
  EXPECT_TRUE(in.good()) << path;
  return pieces;
}

std::string llama2c_decode(const std::vector<std::string>& pieces, int32_t previous, int32_t token) {
  std::string piece = pieces.at(static_cast<size_t>(token));
  if (previous == 1 && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
  unsigned byte = 0;
  if (piece.size() == 6 && std::sscanf(piece.c_str(), "<0x%02X>", &byte) == 1)
    return std::string(1, char(byte));
  return piece;
}

// A real trained model: any mistake in RMSNorm, RoPE layout, GQA, SwiGLU or tied
// embeddings turns its greedy story into garbage. The published greedy output from BOS
// (shared/data/stories260K/README.md) must come out exactly.
TEST(NaiveForwardTest, Stories260KGreedyReproducesPublishedStory) {
  const auto data = shared_dir() / "data" / "stories260K";
  const auto dir = fresh_temp_dir("naive_stories260K");
  io::import_llama2c(data / "stories260K.bin", data / "tok512.bin", dir);
  const NaiveModel model(dir);
  ASSERT_EQ(model.config().vocab_size, 512);
  const auto pieces = read_tok512_pieces(data / "tok512.bin");

  const std::string expected =
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, "
      "she "
      "saw a big, red ball. She wanted to play with it, but it was too high.\n"
      "Lily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do. She said, "
      "\"I "
      "want to play with your ball, but I can't find it.\"";
  std::vector<int32_t> tokens = {1};  // BOS
  std::string text;
  while (text.size() < expected.size() && tokens.size() < 200) {
    const auto logits = model.forward(tokens, ForwardMode::Teacher).back();
    const int32_t next =
        static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    if (next == 1) break;  // the model ends a story with BOS
    text += llama2c_decode(pieces, tokens.back(), next);
    tokens.push_back(next);
    ASSERT_EQ(text.compare(0, std::min(text.size(), expected.size()), expected, 0,
                           std::min(text.size(), expected.size())),
              0)
        << "diverged after " << tokens.size() - 1 << " tokens: " << text;
  }
  EXPECT_EQ(text.substr(0, expected.size()), expected);
  // The SwiftKV mode of a checkpoint without SwiftKV is the plain model.
  const auto teacher = model.forward(tokens, ForwardMode::Teacher);
  const auto swiftkv = model.forward(tokens, ForwardMode::SwiftKV);
  EXPECT_EQ(teacher, swiftkv);
}

}  // namespace
}  // namespace swiftkv::testing
