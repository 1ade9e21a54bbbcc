// The engine's SwiftKV early-exit path against an independent float64 "training form"
// forward (every position through every layer): by SWIFTKV.md's invariant they agree at
// every position, for prompts and for decode steps.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "kernels/gemm.h"
#include "model/model.h"
#include "naive_forward.h"
#include "random_checkpoint.h"
#include "test_paths.h"

namespace swiftkv::model {
namespace {

struct Layout {
  int64_t swiftkv_layers, group_size;
  bool bias;
};

class SwiftKVInvariant : public ::testing::TestWithParam<Layout> {
 protected:
  void SetUp() override {
    kernels::set_num_threads(2);
    const Layout layout = GetParam();
    config_ = swiftkv::testing::tiny_config(6, layout.swiftkv_layers, layout.group_size, layout.bias);
    dir_ = swiftkv::testing::fresh_temp_dir("invariant_M" + std::to_string(layout.swiftkv_layers) + "_G" +
                                            std::to_string(layout.group_size) + (layout.bias ? "_bias" : ""));
    swiftkv::testing::write_random_checkpoint(config_, dir_,
                                              1000 + static_cast<uint64_t>(layout.swiftkv_layers));
    LoadOptions options;
    options.weight_type = kernels::WeightType::F32;
    options.load_teacher = true;
    model_ = Model::load(dir_, options);
    naive_ = std::make_unique<swiftkv::testing::NaiveModel>(dir_);
  }

  // f32 engine vs float64 reference: errors grow with the depth of the computation; the
  // bound is relative to the logits' scale with room for a few hundred f32 roundings.
  static void expect_close(const float* engine, const std::vector<double>& reference,
                           const std::string& where) {
    double scale = 1;
    for (double value : reference) scale = std::max(scale, std::abs(value));
    const double tolerance = 2e-4 * scale;
    double worst = 0;
    for (size_t i = 0; i < reference.size(); ++i) worst = std::max(worst, std::abs(engine[i] - reference[i]));
    EXPECT_LE(worst, tolerance) << where << ": max |engine - reference| = " << worst;
  }

  // Prefill `prompt_length` random tokens, then 20 greedy decode steps; every step's logits
  // must equal the reference's at that position.
  void check_prompt_and_decode(Path path, swiftkv::testing::ForwardMode mode, int64_t prompt_length) {
    const int64_t vocab = config_.vocab_size, decode_steps = 20;
    std::vector<int32_t> tokens(static_cast<size_t>(prompt_length));
    for (int64_t t = 0; t < prompt_length; ++t)
      tokens[static_cast<size_t>(t)] = static_cast<int32_t>((t * 37 + 11) % vocab);
    KvCache cache = model_->make_cache(prompt_length + decode_steps, path);
    std::vector<std::vector<float>> step_logits;
    step_logits.push_back(model_->forward(tokens, 0, cache, path, Logits::Last));
    for (int64_t step = 0; step < decode_steps; ++step) {
      const auto& last = step_logits.back();
      int32_t next = static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin());
      tokens.push_back(next);
      if (step + 1 < decode_steps)
        step_logits.push_back(model_->forward(std::span<const int32_t>(&tokens.back(), 1),
                                              prompt_length + step, cache, path, Logits::Last));
    }
    tokens.pop_back();  // the last sampled token was never fed
    auto reference = naive_->forward(tokens, mode);
    for (size_t step = 0; step < step_logits.size(); ++step) {
      const size_t position = static_cast<size_t>(prompt_length) - 1 + step;
      expect_close(step_logits[step].data(), reference[position],
                   "prompt " + std::to_string(prompt_length) + ", position " + std::to_string(position));
    }
  }

  io::ModelConfig config_;
  std::filesystem::path dir_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<swiftkv::testing::NaiveModel> naive_;
};

TEST_P(SwiftKVInvariant, EarlyExitPrefillAndDecodeEqualTrainingForm) {
  for (int64_t prompt_length : {1, 7, 64, 300})
    check_prompt_and_decode(Path::SwiftKV, swiftkv::testing::ForwardMode::SwiftKV, prompt_length);
}

TEST_P(SwiftKVInvariant, TeacherPathEqualsReferenceTeacher) {
  check_prompt_and_decode(Path::Teacher, swiftkv::testing::ForwardMode::Teacher, 64);
}

TEST_P(SwiftKVInvariant, AllPositionLogitsEqualTrainingForm) {
  std::vector<int32_t> tokens;
  for (int32_t t = 0; t < 40; ++t) tokens.push_back((t * 13 + 5) % static_cast<int32_t>(config_.vocab_size));
  KvCache cache = model_->make_cache(40, Path::SwiftKV);
  std::vector<float> logits = model_->forward(tokens, 0, cache, Path::SwiftKV, Logits::All);
  auto reference = naive_->forward(tokens, swiftkv::testing::ForwardMode::SwiftKV);
  for (size_t t = 0; t < tokens.size(); ++t)
    expect_close(logits.data() + t * static_cast<size_t>(config_.vocab_size), reference[t],
                 "position " + std::to_string(t));
}

TEST_P(SwiftKVInvariant, AcrossKVCacheBytesShrinkByGroups) {
  const Layout layout = GetParam();
  const double L = 6, M = static_cast<double>(layout.swiftkv_layers),
               G = static_cast<double>(layout.group_size);
  EXPECT_DOUBLE_EQ(static_cast<double>(model_->kv_bytes_per_token(Path::SwiftKV)) /
                       static_cast<double>(model_->kv_bytes_per_token(Path::Teacher)),
                   (M + (L - M) / G) / L);
}

INSTANTIATE_TEST_SUITE_P(Layouts, SwiftKVInvariant,
                         ::testing::Values(Layout{1, 1, false}, Layout{3, 1, false}, Layout{5, 1, false},
                                           Layout{2, 2, false}, Layout{4, 2, false}, Layout{3, 1, true}),
                         [](const ::testing::TestParamInfo<Layout>& info) {
                           return "M" + std::to_string(info.param.swiftkv_layers) + "_G" +
                                  std::to_string(info.param.group_size) + (info.param.bias ? "_bias" : "");
                         });

}  // namespace
}  // namespace swiftkv::model
