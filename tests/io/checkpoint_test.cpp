#include "io/checkpoint.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "io_test_util.h"
#include "test_paths.h"

namespace swiftkv::io {
namespace {

using testing::expect_error;
using testing::write_checkpoint;

// stories260K's shapes (H 64, FFN 172, 8/4 heads of 8) with 5 layers.
ModelConfig small_config(int64_t M, int64_t G, bool bias = false, bool tied = true) {
  ModelConfig c;
  c.model_type = M < 5 ? "llama_swiftkv" : "llama";
  c.vocab_size = 512;
  c.hidden_size = 64;
  c.intermediate_size = 172;
  c.num_hidden_layers = 5;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 4;
  c.head_dim = 8;
  c.tie_word_embeddings = tied;
  c.attention_bias = bias;
  c.num_key_value_layers = M;
  c.key_value_group_size = G;
  return c;
}

std::set<std::string> names_of(const std::vector<ExpectedTensor>& list) {
  std::set<std::string> names;
  for (const auto& tensor : list) names.insert(tensor.name);
  return names;
}

std::vector<int64_t> shape_of(const std::vector<ExpectedTensor>& list, const std::string& name) {
  for (const auto& tensor : list)
    if (tensor.name == name) return tensor.shape;
  ADD_FAILURE() << name << " not in list";
  return {};
}

TEST(Checkpoint, PlainModelNeedsEveryLlamaTensor) {
  auto list = inference_tensors(small_config(5, 1, false, /*tied=*/false));
  EXPECT_EQ(list.size(), 1 + 5 * 9 + 1 + 1u);  // embed, 9 per layer, norm, lm_head
  EXPECT_EQ(shape_of(list, "model.embed_tokens.weight"), (std::vector<int64_t>{512, 64}));
  EXPECT_EQ(shape_of(list, "model.layers.0.self_attn.q_proj.weight"), (std::vector<int64_t>{64, 64}));
  EXPECT_EQ(shape_of(list, "model.layers.4.self_attn.k_proj.weight"), (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(shape_of(list, "model.layers.2.self_attn.o_proj.weight"), (std::vector<int64_t>{64, 64}));
  EXPECT_EQ(shape_of(list, "model.layers.3.mlp.up_proj.weight"), (std::vector<int64_t>{172, 64}));
  EXPECT_EQ(shape_of(list, "model.layers.3.mlp.down_proj.weight"), (std::vector<int64_t>{64, 172}));
  EXPECT_EQ(shape_of(list, "model.layers.1.post_attention_layernorm.weight"), (std::vector<int64_t>{64}));
  EXPECT_EQ(shape_of(list, "lm_head.weight"), (std::vector<int64_t>{512, 64}));
  EXPECT_TRUE(teacher_tensors(small_config(5, 1)).empty());
  EXPECT_FALSE(names_of(inference_tensors(small_config(5, 1))).count("lm_head.weight"));  // tied
}

TEST(Checkpoint, SwiftKVTensorsFollowTheGroupLayout) {
  // L = 5, M = 1, G = 2: later layers 1..4, group leaders 1 and 3.
  ModelConfig c = small_config(1, 2, /*bias=*/true);
  std::set<std::string> names = names_of(inference_tensors(c));
  EXPECT_TRUE(names.count("model.norm_swiftkv.weight"));
  EXPECT_TRUE(names.count("model.layers.0.self_attn.q_proj.weight"));
  EXPECT_TRUE(names.count("model.layers.0.self_attn.k_proj.bias"));
  for (int layer = 1; layer < 5; ++layer) {
    std::string p = "model.layers." + std::to_string(layer) + ".self_attn.";
    EXPECT_TRUE(names.count(p + "q_proj_swiftkv.weight")) << layer;
    EXPECT_TRUE(names.count(p + "q_proj_swiftkv.bias")) << layer;
    EXPECT_FALSE(names.count(p + "q_proj.weight")) << layer;  // teacher: not needed
    bool leader = layer == 1 || layer == 3;
    EXPECT_EQ(names.count(p + "k_proj_swiftkv.weight"), leader ? 1u : 0u) << layer;
    EXPECT_EQ(names.count(p + "v_proj_swiftkv.bias"), leader ? 1u : 0u) << layer;
    EXPECT_TRUE(names.count(p + "o_proj.weight")) << layer;
  }
  auto list = inference_tensors(c);
  EXPECT_EQ(shape_of(list, "model.layers.3.self_attn.k_proj_swiftkv.weight"), (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(shape_of(list, "model.layers.3.self_attn.v_proj_swiftkv.bias"), (std::vector<int64_t>{32}));
  EXPECT_EQ(shape_of(list, "model.layers.2.self_attn.q_proj_swiftkv.weight"), (std::vector<int64_t>{64, 64}));

  std::set<std::string> teacher = names_of(teacher_tensors(c));
  EXPECT_EQ(teacher.size(), 4 * 6u);  // q/k/v weight + bias for layers 1..4
  EXPECT_TRUE(teacher.count("model.layers.4.self_attn.v_proj.bias"));
  EXPECT_FALSE(teacher.count("model.layers.0.self_attn.q_proj.weight"));
}

TEST(Checkpoint, MatchingCheckpointValidatesWithOrWithoutTeacher) {
  ModelConfig c = small_config(2, 3);
  auto dir = swiftkv::testing::fresh_temp_dir("io_ckpt_ok");
  write_checkpoint(dir, inference_tensors(c));
  EXPECT_NO_THROW(validate_checkpoint(c, TensorStore::open(dir)));

  auto with_teacher = inference_tensors(c);
  for (const auto& tensor : teacher_tensors(c)) with_teacher.push_back(tensor);
  with_teacher.push_back({"model.layers.0.self_attn.rotary_emb.inv_freq", {4}});  // old exporters' buffer
  with_teacher.push_back({"lm_head.weight", {512, 64}});  // a tied model that still saved lm_head
  dir = swiftkv::testing::fresh_temp_dir("io_ckpt_teacher");
  write_checkpoint(dir, with_teacher);
  EXPECT_NO_THROW(validate_checkpoint(c, TensorStore::open(dir)));
}

TEST(Checkpoint, WrongShapeNamesFileTensorAndBothShapes) {
  ModelConfig c = small_config(5, 1);
  auto tensors = inference_tensors(c);
  for (auto& tensor : tensors)
    if (tensor.name == "model.layers.3.mlp.up_proj.weight") tensor.shape = {64, 172};
  auto dir = swiftkv::testing::fresh_temp_dir("io_ckpt_shape");
  write_checkpoint(dir, tensors);
  expect_error(
      [&] { validate_checkpoint(c, TensorStore::open(dir)); },
      {"model.safetensors: tensor model.layers.3.mlp.up_proj.weight has shape [64, 172], config.json "
       "implies [172, 64]",
       (dir / "model.safetensors").string()});
}

TEST(Checkpoint, MissingTensorIsNamedWithItsShape) {
  ModelConfig c = small_config(3, 1, /*bias=*/true);
  auto tensors = inference_tensors(c);
  std::erase_if(tensors, [](const ExpectedTensor& t) {
    return t.name == "model.layers.4.self_attn.k_proj_swiftkv.bias" || t.name == "model.norm_swiftkv.weight";
  });
  auto dir = swiftkv::testing::fresh_temp_dir("io_ckpt_missing");
  write_checkpoint(dir, tensors);
  std::string message =
      expect_error([&] { validate_checkpoint(c, TensorStore::open(dir)); },
                   {"checkpoint " + dir.string() + " does not match its config.json (2 problems)",
                    "missing tensor model.layers.4.self_attn.k_proj_swiftkv.bias (config.json "
                    "implies shape [32])",
                    "missing tensor model.norm_swiftkv.weight (config.json implies shape [64])"});
}

TEST(Checkpoint, UnexpectedTensorsAreReportedButTeacherIsTolerated) {
  // A SwiftKV checkpoint read with a config that says SwiftKV is off: the *_swiftkv tensors
  // are unexpected.
  ModelConfig swiftkv = small_config(3, 1);
  auto dir = swiftkv::testing::fresh_temp_dir("io_ckpt_unexpected");
  auto tensors = inference_tensors(swiftkv);
  for (const auto& tensor : teacher_tensors(swiftkv)) tensors.push_back(tensor);
  tensors.push_back({"model.layers.1.mlp.gate_proj.bias", {172}});
  write_checkpoint(dir, tensors);
  ModelConfig plain = small_config(5, 1);
  // (norm_swiftkv alone is tolerated: the reference models create it even with SwiftKV off.)
  expect_error(
      [&] { validate_checkpoint(plain, TensorStore::open(dir)); },
      {"model.safetensors: unexpected tensor model.layers.3.self_attn.q_proj_swiftkv.weight [64, 64]",
       "unexpected tensor model.layers.1.mlp.gate_proj.bias [172]"});
  // With the right config only the stray bias is wrong.
  std::string message = expect_error([&] { validate_checkpoint(swiftkv, TensorStore::open(dir)); },
                                     {"(1 problem)", "unexpected tensor model.layers.1.mlp.gate_proj.bias"});
  EXPECT_EQ(message.find("q_proj"), std::string::npos) << message;
}

TEST(Checkpoint, NormSwiftkvIsToleratedWhenSwiftKVIsOff) {
  ModelConfig plain = small_config(5, 1);
  auto dir = swiftkv::testing::fresh_temp_dir("io_ckpt_norm_swiftkv_off");
  auto tensors = inference_tensors(plain);
  tensors.push_back({"model.norm_swiftkv.weight", {64}});
  write_checkpoint(dir, tensors);
  EXPECT_NO_THROW(validate_checkpoint(plain, TensorStore::open(dir)));
  auto wrong = swiftkv::testing::fresh_temp_dir("io_ckpt_norm_swiftkv_off_wrong");
  tensors.back().shape = {65};
  write_checkpoint(wrong, tensors);
  expect_error([&] { validate_checkpoint(plain, TensorStore::open(wrong)); },
               {"model.norm_swiftkv.weight has shape [65], config.json implies [64]"});
}

TEST(Checkpoint, TeacherTensorsAreShapeChecked) {
  ModelConfig c = small_config(3, 2);
  auto tensors = inference_tensors(c);
  tensors.push_back({"model.layers.4.self_attn.k_proj.weight", {64, 64}});
  auto dir = swiftkv::testing::fresh_temp_dir("io_ckpt_teacher_shape");
  write_checkpoint(dir, tensors);
  expect_error(
      [&] { validate_checkpoint(c, TensorStore::open(dir)); },
      {"tensor model.layers.4.self_attn.k_proj.weight has shape [64, 64], config.json implies [32, 64]"});
}

}  // namespace
}  // namespace swiftkv::io
