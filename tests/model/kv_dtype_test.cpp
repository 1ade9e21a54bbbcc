// bf16 and int8 KV caches: what a pool stores and reads back, what a forward pass computes with
// them next to a float32 cache, and how many bytes a token takes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "expect_error.h"
#include "io/random_model.h"
#include "kernels/gemm.h"
#include "model/model.h"
#include "random_checkpoint.h"
#include "test_paths.h"

namespace swiftkv::model {
namespace {

constexpr double kUnitBF16 = 1.0 / 256;  // bf16 keeps 8 significand bits: relative rounding <= 2^-8

std::vector<float> normal_values(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> values(n);
  for (float& value : values) value = normal(rng);
  return values;
}

TEST(KvPool, ReadsBackWhatWasWrittenWithinTheDtypesError) {
  const int64_t caches = 3, blocks = 7, block_size = 4, nkv = 2, d = 24, width = nkv * d, tokens = 20;
  const BlockTable table{6, 2, 0, 5, 3};  // out of order; block 1 and 4 belong to no one
  for (KvDType dtype : {KvDType::F32, KvDType::BF16, KvDType::INT8}) {
    SCOPED_TRACE(kv_dtype_name(dtype));
    KvPool pool(caches, blocks, block_size, nkv, d, dtype);
    const auto keys = normal_values(static_cast<size_t>(caches * tokens * width), 1);
    const auto values = normal_values(keys.size(), 2);
    auto at = [&](int64_t cache, int64_t t) { return static_cast<size_t>((cache * tokens + t) * width); };
    for (int64_t cache = 0; cache < caches; ++cache)
      for (int64_t t = 0; t < tokens; ++t)
        pool.write(cache, table, t, &keys[at(cache, t)], &values[at(cache, t)]);

    std::vector<float> key(static_cast<size_t>(width)), value(key.size());
    for (int64_t cache = 0; cache < caches; ++cache) {
      for (int64_t t = 0; t < tokens; ++t) {
        pool.read(cache, table, t, key.data(), value.data());
        for (const auto& [written, read] : {std::pair{&keys, &key}, std::pair{&values, &value}}) {
          for (int64_t h = 0; h < nkv; ++h) {
            const float* x = written->data() + at(cache, t) + h * d;
            const float max_abs = std::abs(
                *std::max_element(x, x + d, [](float a, float b) { return std::abs(a) < std::abs(b); }));
            for (int64_t i = 0; i < d; ++i) {
              // f32 exact; bf16 one rounding; int8 half a step of max|x| / 127 (plus float32 roundings).
              const double bound = dtype == KvDType::F32    ? 0.0
                                   : dtype == KvDType::BF16 ? kUnitBF16 * std::abs(x[i])
                                                            : max_abs / 127 * (0.5 + 1e-5);
              ASSERT_LE(std::abs((*read)[static_cast<size_t>(h * d + i)] - x[i]), bound)
                  << "cache " << cache << " token " << t << " head " << h << " element " << i;
            }
          }
        }
      }
    }
    // The kernel's view points at the table's blocks, in table order.
    KvBlockPointers pointers;
    const kernels::KvView view = pool.view(1, table, pointers);
    EXPECT_EQ(view.dtype, dtype);
    EXPECT_EQ(view.block_size, block_size);
    EXPECT_EQ(view.token_stride, width);
    ASSERT_EQ(pointers.keys.size(), table.size());
    EXPECT_EQ(pointers.key_scales.size(), dtype == KvDType::INT8 ? table.size() : 0u);
    for (size_t b = 1; b < table.size(); ++b) {
      const std::ptrdiff_t step = static_cast<const std::byte*>(view.key_blocks[b]) -
                                  static_cast<const std::byte*>(view.key_blocks[0]),
                           bytes_per_block = block_size * width *
                                             (dtype == KvDType::F32    ? 4
                                              : dtype == KvDType::BF16 ? 2
                                                                       : 1);
      EXPECT_EQ(step, (table[b] - table[0]) * bytes_per_block) << "block " << b;
    }

    swiftkv::testing::expect_error([&] { pool.write(0, table, 20, keys.data(), values.data()); },
                                   {"position 20", "5 blocks"});
    swiftkv::testing::expect_error([&] { pool.read(0, BlockTable{7}, 0, key.data(), value.data()); },
                                   {"block 7", "7 blocks"});
  }
}

// A tiny random SwiftKV model (L = 6, M = 2, G = 2: 4 caches on the SwiftKV path, 6 on the
// teacher's), loaded with float32 weights so that the KV dtype is the only approximation.
class TinySwiftKV : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    kernels::set_num_threads(2);
    const auto dir = swiftkv::testing::fresh_temp_dir("kv_dtype_forward");
    swiftkv::testing::write_random_checkpoint(swiftkv::testing::tiny_config(6, 2, 2), dir, 11);
    LoadOptions options;
    options.weight_type = kernels::WeightType::F32;
    options.load_teacher = true;
    model_ = Model::load(dir, options).release();
  }
  static void TearDownTestSuite() { delete model_; }

  // Logits of the prompt's last token, then of each of `decode` more (fixed) tokens, one step at a
  // time, with the KV in paged blocks of `dtype` handed out out of order.
  static std::vector<float> prefill_and_decode(Path path, KvDType dtype, int64_t prompt, int64_t decode) {
    const int64_t block_size = 8;
    KvPool pool = model_->make_pool(12, block_size, path, dtype);
    BlockTable table;
    for (int32_t block = 11; static_cast<int64_t>(table.size()) * block_size < prompt + decode; block -= 2)
      table.push_back(block);
    std::vector<int32_t> tokens(static_cast<size_t>(prompt + decode));
    for (size_t t = 0; t < tokens.size(); ++t) tokens[t] = static_cast<int32_t>((t * 37 + 5) % 101);
    const std::span<const int32_t> all(tokens);
    SequenceStep prefill{all.first(static_cast<size_t>(prompt)), 0, &table, Logits::Last};
    std::vector<float> logits = model_->forward(std::span(&prefill, 1), pool, path);
    for (int64_t t = prompt; t < prompt + decode; ++t) {
      SequenceStep step{all.subspan(static_cast<size_t>(t), 1), t, &table, Logits::Last};
      const std::vector<float> next = model_->forward(std::span(&step, 1), pool, path);
      logits.insert(logits.end(), next.begin(), next.end());
    }
    return logits;
  }

  static Model* model_;
};
Model* TinySwiftKV::model_ = nullptr;

class KvDTypeForward : public TinySwiftKV, public ::testing::WithParamInterface<Path> {};

// Bound: every stored K/V element is off by at most u = 2^-8 relative to its row's largest
// magnitude (bf16: of itself; int8: half a step of max/127). Attention outputs are convex
// combinations of V rows (error <= u max|v|) weighted by a softmax of dot products of unit-scale
// vectors (shifted by <= u of their size by K's error), so each layer adds about u through K and
// u through V to activations of order 1, and the random weights (std 1/sqrt(fan_in)) pass it on
// without amplifying it: <= 2 L u of the logits' scale (0.047 for L = 6; measured ~1u for bf16,
// ~3u for int8). It fails for a cache read with the wrong scale, block or element type (errors
// of order 1), and the logits must differ from float32's at all (the dtype is really in use).
TEST_P(KvDTypeForward, PrefillAndDecodeLogitsStayCloseToTheFloat32Cache) {
  const Path path = GetParam();
  const int64_t layers = model_->config().num_hidden_layers;
  const std::vector<float> exact = prefill_and_decode(path, KvDType::F32, 29, 6);
  float scale = 0;
  for (float x : exact) scale = std::max(scale, std::abs(x));
  ASSERT_GT(scale, 0.5f);
  for (KvDType dtype : {KvDType::BF16, KvDType::INT8}) {
    const std::vector<float> approx = prefill_and_decode(path, dtype, 29, 6);
    ASSERT_EQ(approx.size(), exact.size());
    double worst = 0;
    for (size_t i = 0; i < exact.size(); ++i) worst = std::max(worst, double(std::abs(approx[i] - exact[i])));
    EXPECT_GT(worst, 0.0) << kv_dtype_name(dtype);
    EXPECT_LE(worst, 2 * layers * kUnitBF16 * scale) << kv_dtype_name(dtype);
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, KvDTypeForward, ::testing::Values(Path::SwiftKV, Path::Teacher),
                         [](const ::testing::TestParamInfo<Path>& info) {
                           return info.param == Path::SwiftKV ? std::string("SwiftKV")
                                                              : std::string("Teacher");
                         });

// Bytes per token from the config by hand: caches x {K, V} x KV heads x (head_dim elements of
// the dtype, + one float scale for int8).
int64_t expected_bytes_per_token(const io::ModelConfig& config, Path path, KvDType dtype) {
  const int64_t L = config.num_hidden_layers, M = config.num_key_value_layers,
                G = config.key_value_group_size;
  const int64_t caches = path == Path::Teacher ? L : M + (L - M) / G;
  const int64_t head_bytes = dtype == KvDType::F32    ? 4 * config.head_dim
                             : dtype == KvDType::BF16 ? 2 * config.head_dim
                                                      : config.head_dim + 4;
  return caches * 2 * config.num_key_value_heads * head_bytes;
}

TEST_F(TinySwiftKV, BytesPerTokenAndPoolSizesCountEveryCacheAndScale) {
  for (Path path : {Path::SwiftKV, Path::Teacher}) {
    for (KvDType dtype : {KvDType::F32, KvDType::BF16, KvDType::INT8}) {
      const int64_t expected = expected_bytes_per_token(model_->config(), path, dtype);
      EXPECT_EQ(model_->kv_bytes_per_token(path, dtype), expected) << kv_dtype_name(dtype);
      EXPECT_EQ(model_->make_pool(5, 16, path, dtype).bytes(), static_cast<size_t>(5 * 16 * expected));
      EXPECT_EQ(model_->make_cache(40, path, dtype).bytes(), static_cast<size_t>(40 * expected));
    }
  }
  // tiny: 2 KV heads x head_dim 8; SwiftKV M = 2, G = 2 over L = 6 -> 4 caches. int8 + AcrossKV
  // (G = 2) against a float32 teacher cache: (8 + 4) / 32 x 4 / 6.
  EXPECT_EQ(model_->kv_bytes_per_token(Path::SwiftKV, KvDType::INT8), 4 * 2 * 2 * (8 + 4));
  EXPECT_EQ(model_->kv_bytes_per_token(Path::Teacher, KvDType::F32), 6 * 2 * 2 * 8 * 4);
}

TEST(KvBytes, Llama32OneBShapeWithAndWithoutAcrossKV) {
  for (int64_t group : {1, 2}) {
    const io::ModelConfig config = io::random_model_config("llama-3.2-1b", 8, group);
    for (Path path : {Path::SwiftKV, Path::Teacher})
      for (KvDType dtype : {KvDType::F32, KvDType::BF16, KvDType::INT8})
        EXPECT_EQ(kv_bytes_per_token(config, path, dtype), expected_bytes_per_token(config, path, dtype));
  }
  // 16 layers x 8 KV heads x 64: bf16 32 KiB per token; M = 8, G = 2 keeps 12 caches, int8 stores
  // 64 + 4 bytes per head.
  const io::ModelConfig across = io::random_model_config("llama-3.2-1b", 8, 2);
  EXPECT_EQ(kv_bytes_per_token(across, Path::Teacher, KvDType::BF16), 32768);
  EXPECT_EQ(kv_bytes_per_token(across, Path::SwiftKV, KvDType::INT8), 12 * 2 * 8 * 68);
}

}  // namespace
}  // namespace swiftkv::model
