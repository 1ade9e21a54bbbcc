// eval (perplexity, agreement and KL against a teacher) and what convert's initialisation does
// to a real model (stories260K, L = 5) when the engine runs it.
#include "runtime/eval.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <fstream>

#include "common/error.h"
#include "expect_error.h"
#include "io/convert.h"
#include "io/llama2c.h"
#include "io/random_model.h"
#include "kernels/gemm.h"
#include "model/model.h"
#include "runtime/scoring.h"
#include "test_paths.h"
#include "tokenizer/tokenizer.h"

namespace swiftkv::runtime {
namespace {

namespace fs = std::filesystem;
using swiftkv::testing::shared_dir;

// A fresh directory of this process's own: test programs of several build trees may run at once.
fs::path unique_dir(const std::string& name) {
  return swiftkv::testing::fresh_temp_dir(name + "_" + std::to_string(::getpid()));
}

using swiftkv::testing::expect_error;

// Cache `layer`'s key or value of position t, as float32.
std::vector<float> cached(const model::KvCache& cache, bool key, int64_t layer, int64_t t) {
  const model::KvPool& pool = cache.pool();
  std::vector<float> keys(static_cast<size_t>(pool.num_kv_heads() * pool.head_dim())), values(keys.size());
  pool.read(layer, cache.table(), t, keys.data(), values.data());
  return key ? keys : values;
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

TEST(EvalData, SplitsOnBlankLinesWithoutStrippingAndCutsAtMaxLen) {
  const fs::path dir = unique_dir("eval_split") / "model";
  io::write_random_model("tiny", std::nullopt, 1, dir);  // byte-level tokenizer, BOS 256
  auto tokenizer = tokenizer::Tokenizer::from_dir(dir);
  // Paragraphs: "ab", "cd", "" (skipped), "ef", "\nx"; "y" is one token + BOS.
  auto sequences = eval_sequences(tokenizer, "ab\n\ncd\n\n\n\nef\n\n\nx\n\ny", 512);
  ASSERT_EQ(sequences.size(), 5u);
  EXPECT_EQ(sequences[0], (std::vector<int32_t>{256, 'a', 'b'}));
  EXPECT_EQ(sequences[3], (std::vector<int32_t>{256, '\n', 'x'}));
  EXPECT_EQ(sequences[4], (std::vector<int32_t>{256, 'y'}));
  sequences = eval_sequences(tokenizer, "abcdef\n\nab", 3);
  EXPECT_EQ(sequences[0], (std::vector<int32_t>{256, 'a', 'b'}));
  EXPECT_EQ(sequences[1], (std::vector<int32_t>{256, 'a', 'b'}));
  expect_error([&] { eval_sequences(tokenizer, "ab", 1); }, {"--max-len must be at least 2", "got 1"});
}

TEST(EvalData, BadFilesGiveClearErrors) {
  const fs::path dir = unique_dir("eval_bad_data");
  expect_error([&] { read_eval_text(dir / "missing.txt"); }, {"eval data", "missing.txt does not exist"});
  expect_error([&] { read_eval_text(dir); }, {"is a directory"});
  write_text(dir / "empty.txt", "");
  expect_error([&] { read_eval_text(dir / "empty.txt"); }, {"empty.txt is empty"});
  write_text(dir / "latin1.txt", "line one\nline two caf\xe9!\n");
  expect_error([&] { read_eval_text(dir / "latin1.txt"); },
               {"latin1.txt is not valid UTF-8: byte 0xe9 at offset 21 (line 2)"});
  write_text(dir / "good.txt", "caf\xc3\xa9\n");
  EXPECT_EQ(read_eval_text(dir / "good.txt"), "caf\xc3\xa9\n");
}

// stories260K imported once, converted to a few SwiftKV layouts (not distilled).
class ConvertedStories : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = unique_dir("eval_stories");
    io::import_llama2c(shared_dir() / "data/stories260K/stories260K.bin",
                       shared_dir() / "data/stories260K/tok512.bin", dir_ / "base");
    kernels::set_num_threads(2);
    const std::string text = read_eval_text(shared_dir() / "data/tinystories/tinystories_dev.txt");
    // The first 40 paragraphs: enough positions to see the conversion, fast enough for a test.
    auto tokenizer = tokenizer::Tokenizer::from_dir(dir_ / "base");
    sequences_ = eval_sequences(tokenizer, text, 512);
    sequences_.resize(40);
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static fs::path converted(int64_t m, int64_t g, bool drop_teacher = false) {
    std::string name = "m";  // appended step by step: GCC 12 warns falsely on "m" + string
    name.append(std::to_string(m)).append("g").append(std::to_string(g)).append(drop_teacher ? "drop" : "");
    const fs::path out = dir_ / name;
    if (!fs::exists(out)) {
      io::ConvertOptions options;
      options.swiftkv_layers = m;
      options.group_size = g;
      options.drop_teacher = drop_teacher;
      io::convert_to_swiftkv(dir_ / "base", out, options);
    }
    return out;
  }
  static std::unique_ptr<model::Model> load(const fs::path& dir, bool teacher = true) {
    model::LoadOptions options;
    options.weight_type = kernels::WeightType::F32;
    options.load_teacher = teacher;
    return model::Model::load(dir, options);
  }
  static fs::path dir_;
  static std::vector<std::vector<int32_t>> sequences_;
};
fs::path ConvertedStories::dir_;
std::vector<std::vector<int32_t>> ConvertedStories::sequences_;

TEST_F(ConvertedStories, AModelAgainstItselfHasKlZeroAndAgreementOne) {
  auto model = load(dir_ / "base");
  EvalResult result =
      evaluate({*model, model::Path::SwiftKV}, sequences_, ScoredModel{*model, model::Path::SwiftKV});
  EXPECT_EQ(result.sequences, 40);
  EXPECT_GT(result.tokens, 3000);
  EXPECT_EQ(result.mean_kl, 0.0);
  EXPECT_EQ(result.top1_agreement, 1.0);
  EXPECT_EQ(result.teacher_mean_nll, result.mean_nll);
  EXPECT_DOUBLE_EQ(result.perplexity, std::exp(result.mean_nll));
  // The same figure as token_logprobs, the other user of the scoring forward.
  double total = 0;
  for (const auto& ids : sequences_)
    for (double logprob : token_logprobs(*model, ids, model::Path::SwiftKV)) total -= logprob;
  EXPECT_EQ(result.mean_nll, total / static_cast<double>(result.tokens));
  // Deterministic.
  EXPECT_EQ(evaluate({*model, model::Path::SwiftKV}, sequences_).mean_nll, result.mean_nll);
  // Scores near llama2.c's dev-text figure (1.6633 on the whole text).
  EXPECT_GT(result.mean_nll, 1.3);
  EXPECT_LT(result.mean_nll, 2.0);
}

TEST_F(ConvertedStories, G1LayerMKvEqualsTheTeachersExactly) {
  for (int64_t m : {2, 4}) {
    auto model = load(converted(m, 1));
    const std::vector<int32_t>& ids = sequences_[0];
    const int64_t T = static_cast<int64_t>(ids.size());
    model::KvCache student = model->make_cache(T, model::Path::SwiftKV);
    model::KvCache teacher = model->make_cache(T, model::Path::Teacher);
    model->forward(ids, 0, student, model::Path::SwiftKV, model::Logits::All);
    model->forward(ids, 0, teacher, model::Path::Teacher, model::Logits::All);
    for (int64_t cache = 0; cache <= m; ++cache) {  // layers < M and layer M itself
      for (int64_t t = 0; t < T; ++t) {
        ASSERT_EQ(cached(student, true, cache, t), cached(teacher, true, cache, t))
            << "M " << m << " layer " << cache << " position " << t;
        ASSERT_EQ(cached(student, false, cache, t), cached(teacher, false, cache, t))
            << "M " << m << " layer " << cache << " position " << t;
      }
    }
    if (m + 1 < model->config().num_hidden_layers) {  // the next layer's K/V come from the wrong input
      double difference = 0;
      for (int64_t t = 1; t < T; ++t) {
        const std::vector<float> student_key = cached(student, true, m + 1, t),
                                 teacher_key = cached(teacher, true, m + 1, t);
        for (size_t i = 0; i < student_key.size(); ++i)
          difference += std::fabs(student_key[i] - teacher_key[i]);
      }
      EXPECT_GT(difference, 1.0) << "M " << m;
    }
  }
}

TEST_F(ConvertedStories, AgainstTeacherMEqualsLMinusOneIsTheTeacherAndSmallerMLosesQuality) {
  auto base = load(dir_ / "base", false);
  const EvalResult teacher_alone = evaluate({*base, model::Path::SwiftKV}, sequences_);

  // M = L - 1, G = 1: the last layer's K/V, Q, norm and everything else are the teacher's, so the
  // converted model is the teacher.
  auto last = load(converted(4, 1));
  EvalResult exact =
      evaluate({*last, model::Path::SwiftKV}, sequences_, ScoredModel{*last, model::Path::Teacher});
  EXPECT_EQ(exact.teacher_mean_nll, teacher_alone.mean_nll);  // SwiftKV off = the base model
  EXPECT_EQ(exact.mean_nll, teacher_alone.mean_nll);
  EXPECT_EQ(exact.top1_agreement, 1.0);
  EXPECT_EQ(exact.mean_kl, 0.0);

  // M = 2: layers 3, 4 get K/V from layer 2's input. Worse, measurably, before distillation.
  auto early = load(converted(2, 1));
  EvalResult m2 =
      evaluate({*early, model::Path::SwiftKV}, sequences_, ScoredModel{*early, model::Path::Teacher});
  EXPECT_EQ(m2.teacher_mean_nll, teacher_alone.mean_nll);
  EXPECT_GT(m2.mean_nll, m2.teacher_mean_nll + 0.05);
  EXPECT_GT(m2.mean_kl, 0.01);
  EXPECT_LT(m2.top1_agreement, 0.98);
  EXPECT_GT(m2.top1_agreement, 0.2);
  // KL(t||s) >= 0 and, per position, the NLL gap is E_data[log t - log s]; the mean KL is not
  // larger than a few nats for a model this close.
  EXPECT_LT(m2.mean_kl, 3.0);

  // --teacher DIR (another checkpoint) gives the same figures as --against-teacher here.
  EvalResult other =
      evaluate({*early, model::Path::SwiftKV}, sequences_, ScoredModel{*base, model::Path::SwiftKV});
  EXPECT_EQ(other.teacher_mean_nll, m2.teacher_mean_nll);
  EXPECT_EQ(other.mean_kl, m2.mean_kl);
  EXPECT_EQ(other.top1_agreement, m2.top1_agreement);
}

TEST_F(ConvertedStories, DropTeacherRunsSwiftkvButRefusesSwiftkvOff) {
  auto kept = load(converted(3, 1), false);
  auto dropped = load(converted(3, 1, /*drop_teacher=*/true), false);
  EXPECT_FALSE(dropped->has_teacher());
  EXPECT_EQ(evaluate({*dropped, model::Path::SwiftKV}, sequences_).mean_nll,
            evaluate({*kept, model::Path::SwiftKV}, sequences_).mean_nll);
  expect_error([&] { load(converted(3, 1, true), true); },
               {"--swiftkv off needs the teacher's", "--drop-teacher"});
}

TEST_F(ConvertedStories, TeacherWithAnotherVocabularyIsRefused) {
  const fs::path other = dir_ / "other_vocab";
  if (!fs::exists(other)) io::write_random_model("tiny", std::nullopt, 1, other, 0, io::DType::F32);
  auto base = load(dir_ / "base", false);
  model::LoadOptions options;
  options.weight_type = kernels::WeightType::F32;
  auto tiny = model::Model::load(other, options);
  expect_error(
      [&] {
        evaluate({*base, model::Path::SwiftKV}, sequences_, ScoredModel{*tiny, model::Path::SwiftKV});
      },
      {"teacher's vocabulary (320 tokens) differs from the model's (512)"});
}

}  // namespace
}  // namespace swiftkv::runtime
