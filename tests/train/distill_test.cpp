// Distillation on stories260K: the held-out loss goes down, frozen tensors keep every bit,
// a killed run resumes to the same weights, and two processes equal one.
#include "train/distill.h"

#include <gtest/gtest.h>

#include <cmath>
#include <sstream>

#include "io/safetensors.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/data.h"
#include "train/training_state.h"
#include "train_test_util.h"

namespace swiftkv::train {
namespace {

namespace fs = std::filesystem;
using swiftkv::testing::read_file;
using swiftkv::testing::run_swiftkv;
using swiftkv::testing::tensor_bytes;
using swiftkv::testing::train_temp_dir;

bool is_trainable(const std::string& name) {
  return name == "model.norm_swiftkv.weight" || name.find("_proj_swiftkv.") != std::string::npos;
}

TEST(Distill, LowersHeldOutLossAndChangesOnlyTrainableTensors) {
  const fs::path dir = train_temp_dir("train_distill_loss");
  const fs::path model = swiftkv::testing::stories_swiftkv(3);
  DistillOptions options;
  options.model_dir = model;
  options.data = swiftkv::testing::tinystories_slice(dir / "train.txt", 60000);
  options.out = dir / "out";
  options.eval_fraction = 0.15;
  options.seq_len = 128;
  options.batch_size = 8;
  options.max_steps = 12;
  options.lr = 2e-3;  // a few steps must show progress
  options.threads = 1;
  options.log_every = 4;
  std::ostringstream log;
  const DistillResult result = run_distill(options, log);
  ASSERT_TRUE(result.initial_eval.done && result.final_eval.done) << log.str();
  const double before = result.initial_eval.kl + result.initial_eval.mse;
  const double after = result.final_eval.kl + result.final_eval.mse;
  EXPECT_LT(after, 0.9 * before) << log.str();
  EXPECT_LT(result.final_eval.nll, result.initial_eval.nll) << log.str();
  EXPECT_NE(log.str().find("tok/s"), std::string::npos);

  // Frozen tensors: every bit as in the input; trainable ones: all changed.
  const io::TensorStore input = io::TensorStore::open(model), output = io::TensorStore::open(options.out);
  ASSERT_EQ(input.names(), output.names());
  int trainable = 0;
  for (const std::string& name : input.names()) {
    EXPECT_EQ(input.at(name).dtype, output.at(name).dtype) << name;
    if (is_trainable(name)) {
      ++trainable;
      EXPECT_NE(tensor_bytes(input, name), tensor_bytes(output, name)) << name << " did not change";
    } else {
      EXPECT_EQ(tensor_bytes(input, name), tensor_bytes(output, name)) << name << " changed";
    }
  }
  EXPECT_EQ(trainable, 7);  // norm_swiftkv + q/k/v_swiftkv of layers 3 and 4
  EXPECT_EQ(read_file(input.directory() / "config.json"), read_file(options.out / "config.json"));
  // The engine serves the result.
  model::LoadOptions load;
  load.weight_type = kernels::WeightType::F32;
  auto engine = model::Model::load(options.out, load);
  model::KvCache cache = engine->make_cache(8, model::Path::SwiftKV);
  const std::vector<int32_t> tokens = {1, 403, 407, 261, 378};
  EXPECT_EQ(engine->forward(tokens, 0, cache, model::Path::SwiftKV, model::Logits::Last).size(), 512u);
}

// --ce-weight (off in the reference recipe): the student's NLL of the data's next tokens,
// summed over the valid targets and divided by ALL positions, like the KL. One batch that holds
// the whole data at lr 0 makes the first training loss that NLL of the unchanged student,
// which the held-out evaluation of the same data measures as a mean over the valid targets.
TEST(Distill, CrossEntropyTermIsTheStudentNllOverAllPositions) {
  const fs::path dir = train_temp_dir("train_distill_ce");
  DistillOptions options;
  options.model_dir = swiftkv::testing::stories_swiftkv(3);
  options.data = swiftkv::testing::tinystories_slice(dir / "train.txt", 8000);
  options.eval_data = options.data;
  options.out = dir / "out";
  options.seq_len = 64;
  DataStats stats;
  const PackedData packed = pack_samples(
      load_samples(options.data, tokenizer::Tokenizer::from_dir(options.model_dir), DataFormat::Text, stats),
      options.seq_len, stats, "test data");
  const int64_t rows = packed.num_sequences(), positions = rows * options.seq_len;
  ASSERT_GT(rows, 2);
  options.batch_size = rows;
  options.max_steps = 1;
  options.lr = 0.0;
  options.kl_weight = 0.0;
  options.mse_weight = 0.0;
  options.ce_weight = 1.0;
  options.threads = 1;
  std::ostringstream log;
  const DistillResult result = run_distill(options, log);
  ASSERT_TRUE(result.initial_eval.done) << log.str();
  // Plain text: every position but the last of a row has a next token.
  const double expected = result.initial_eval.nll * double(positions - rows) / double(positions);
  EXPECT_NEAR(result.first_loss, expected, 1e-4 * expected) << log.str();
  EXPECT_NE(log.str().find(" ce "), std::string::npos) << log.str();
}

std::map<std::string, std::vector<float>> checkpoint_parameters(const fs::path& checkpoints) {
  const auto state = load_latest_training_state(checkpoints);
  std::map<std::string, std::vector<float>> result;
  if (!state) return result;
  for (const auto& tensor : state->parameters) result[tensor.name] = tensor.values;
  return result;
}

class DistillRuns : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = train_temp_dir("train_distill_runs");
    data_ = swiftkv::testing::tinystories_slice(dir_ / "train.txt", 20000);
  }
  std::string args(const fs::path& out, const std::string& extra = "", int steps = 6,
                   int save_every = 2) const {
    return "distill -m " + swiftkv::testing::stories_swiftkv(3).string() + " --data " + data_.string() +
           " --out " + out.string() + " --seq-len 64 --batch-size 4 --threads 1 --seed 3 --max-steps " +
           std::to_string(steps) + " --save-every " + std::to_string(save_every) + " " + extra;
  }
  void run_ok(const std::string& arguments, const std::string& name) const {
    const int status = run_swiftkv(arguments, dir_ / (name + ".log"));
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << read_file(dir_ / (name + ".log"));
  }
  void run_killed(const std::string& arguments, const std::string& name) const {
    const int status = run_swiftkv(arguments, dir_ / (name + ".log"));
    // sh -c reports a child killed by SIGKILL as exit status 128 + 9.
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 128 + SIGKILL)
        << read_file(dir_ / (name + ".log"));
  }
  fs::path dir_, data_;
};

TEST_F(DistillRuns, KilledRunResumesToBitIdenticalWeights) {
  run_ok(args(dir_ / "straight"), "straight");

  // SIGKILL right after the checkpoint of step 4, then --resume.
  run_killed(args(dir_ / "killed", "--kill-after-save 4"), "killed");
  EXPECT_EQ(read_file(dir_ / "killed/checkpoints/latest"), "step-4\n");
  EXPECT_FALSE(fs::exists(dir_ / "killed/model.safetensors"));
  // Without --resume the run refuses to start over the old one.
  const int refused = run_swiftkv(args(dir_ / "killed"), dir_ / "refused.log");
  EXPECT_TRUE(WIFEXITED(refused) && WEXITSTATUS(refused) == 1);
  run_ok(args(dir_ / "killed", "--resume"), "resumed");
  EXPECT_NE(read_file(dir_ / "resumed.log").find("resumed from"), std::string::npos);
  EXPECT_EQ(read_file(dir_ / "straight/model.safetensors"), read_file(dir_ / "killed/model.safetensors"));
  const auto straight = checkpoint_parameters(dir_ / "straight/checkpoints");
  ASSERT_FALSE(straight.empty());
  EXPECT_EQ(straight, checkpoint_parameters(dir_ / "killed/checkpoints"));

  // SIGKILL in the middle of saving step 4: step 2 stays the loadable last good checkpoint.
  run_killed(args(dir_ / "torn", "--kill-during-save 4"), "torn");
  EXPECT_EQ(read_file(dir_ / "torn/checkpoints/latest"), "step-2\n");
  const auto state = load_latest_training_state(dir_ / "torn/checkpoints");
  ASSERT_TRUE(state.has_value());
  EXPECT_EQ(state->step, 2);
  EXPECT_EQ(state->position, 8);
  run_ok(args(dir_ / "torn", "--resume"), "torn_resumed");
  EXPECT_EQ(read_file(dir_ / "straight/model.safetensors"), read_file(dir_ / "torn/model.safetensors"));
}

TEST_F(DistillRuns, TwoProcessesEqualOne) {
  run_ok(args(dir_ / "one", "", 4, 4), "one");
  run_ok(args(dir_ / "two", "--nproc 2", 4, 4), "two");
  EXPECT_NE(read_file(dir_ / "two.log").find("2 process(es)"), std::string::npos)
      << read_file(dir_ / "two.log");
  const auto one = checkpoint_parameters(dir_ / "one/checkpoints");
  const auto two = checkpoint_parameters(dir_ / "two/checkpoints");
  const io::TensorStore initial = io::TensorStore::open(swiftkv::testing::stories_swiftkv(3));
  ASSERT_EQ(one.size(), 7u);
  ASSERT_EQ(two.size(), one.size());
  for (const auto& [name, values] : one) {
    const std::vector<float>& other = two.at(name);
    const std::vector<float> start = initial.read_f32(name);
    ASSERT_EQ(values.size(), other.size());
    float worst = 0.0f, moved = 0.0f;
    for (size_t i = 0; i < values.size(); ++i) {
      worst = std::max(worst, std::fabs(values[i] - other[i]));
      moved = std::max(moved, std::fabs(values[i] - start[i]));
    }
    // Adam moves each value by up to ~lr per step (4 steps x 2e-4 here); the two runs differ
    // only by the summation order of the gradient average.
    EXPECT_LT(worst, 2e-6f) << name;
    EXPECT_GT(moved, 1e-4f) << name << " did not train";
  }
}

}  // namespace
}  // namespace swiftkv::train
