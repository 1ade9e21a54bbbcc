// A batched step over sequences that share one paged KV pool gives each sequence the logits
// its own single-sequence forward gives.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "kernels/gemm.h"
#include "model/model.h"
#include "random_checkpoint.h"
#include "test_paths.h"

namespace swiftkv::model {
namespace {

class BatchedForward : public ::testing::TestWithParam<Path> {};

TEST_P(BatchedForward, EqualsOneSequenceAtATime) {
  kernels::set_num_threads(2);
  const auto config = swiftkv::testing::tiny_config(6, 3, 1);
  const auto dir = swiftkv::testing::fresh_temp_dir(std::string("batched_forward_") +
                                                    (GetParam() == Path::SwiftKV ? "swiftkv" : "teacher"));
  swiftkv::testing::write_random_checkpoint(config, dir, 7);
  LoadOptions options;
  options.weight_type = kernels::WeightType::F32;
  options.load_teacher = true;
  auto model = Model::load(dir, options);
  const Path path = GetParam();

  // Three sequences: prompts of 5, 40 and 17 tokens, the second prefilled in two chunks.
  std::vector<std::vector<int32_t>> prompts;
  for (int32_t length : {5, 40, 17}) {
    std::vector<int32_t> prompt;
    for (int32_t t = 0; t < length; ++t) prompt.push_back((t * 31 + length) % 101);
    prompts.push_back(prompt);
  }
  // Blocks of 8 tokens handed out interleaved, so no sequence's blocks are contiguous.
  const int64_t block_size = 8;
  KvPool pool = model->make_pool(32, block_size, path);
  std::vector<BlockTable> tables(3);
  for (int32_t block = 0; block < 30; ++block) tables[static_cast<size_t>(block % 3)].push_back(block);

  auto chunk = [&](size_t s, int64_t begin, int64_t end, Logits logits) {
    return SequenceStep{std::span<const int32_t>(prompts[s]).subspan(begin, end - begin), begin, &tables[s],
                        logits};
  };
  // Step 1: sequence 0 whole (every row's logits), sequence 1's first chunk (no logits), sequence 2 whole.
  std::vector<SequenceStep> first{chunk(0, 0, 5, Logits::All), chunk(1, 0, 24, Logits::None),
                                  chunk(2, 0, 17, Logits::Last)};
  std::vector<float> batched = model->forward(first, pool, path);
  // Step 2: sequence 1's second chunk.
  std::vector<SequenceStep> second{chunk(1, 24, 40, Logits::Last)};
  std::vector<float> batched_second = model->forward(second, pool, path);
  const int64_t vocab = config.vocab_size;
  ASSERT_EQ(batched.size(), static_cast<size_t>((5 + 1) * vocab));
  ASSERT_EQ(batched_second.size(), static_cast<size_t>(vocab));

  auto expect_rows_equal = [&](const float* got, const std::vector<float>& want, const std::string& what) {
    double worst = 0, scale = 1;
    for (size_t i = 0; i < want.size(); ++i) {
      worst = std::max(worst, static_cast<double>(std::abs(got[i] - want[i])));
      scale = std::max(scale, static_cast<double>(std::abs(want[i])));
    }
    EXPECT_LE(worst, 1e-5 * scale) << what;
  };
  auto alone = [&](size_t s, Logits logits) {
    KvCache cache = model->make_cache(static_cast<int64_t>(prompts[s].size()), path);
    return model->forward(prompts[s], 0, cache, path, logits);
  };
  expect_rows_equal(batched.data(), alone(0, Logits::All), "sequence 0, every position");
  expect_rows_equal(batched.data() + 5 * vocab, alone(2, Logits::Last), "sequence 2, last position");
  expect_rows_equal(batched_second.data(), alone(1, Logits::Last), "sequence 1 after two chunks");
}

INSTANTIATE_TEST_SUITE_P(Paths, BatchedForward, ::testing::Values(Path::SwiftKV, Path::Teacher),
                         [](const ::testing::TestParamInfo<Path>& info) {
                           return info.param == Path::SwiftKV ? std::string("SwiftKV")
                                                              : std::string("Teacher");
                         });

}  // namespace
}  // namespace swiftkv::model
