// The swiftkv program end to end: random base -> convert -> eval --against-teacher --json,
// eval's and bench prefill's KV-cache flag, and the messages a user sees for the mistakes they are likely
// to make.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "common/files.h"
#include "io/model_config.h"
#include "model/model.h"
#include "swiftkv_command.h"
#include "test_paths.h"

namespace swiftkv {
namespace {

namespace fs = std::filesystem;
using swiftkv::testing::CommandResult;
using swiftkv::testing::run_swiftkv_command;

// A fresh directory of this process's own: test programs of several build trees may run at once.
fs::path unique_dir(const std::string& name) {
  return swiftkv::testing::fresh_temp_dir(name + "_" + std::to_string(::getpid()));
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(Cli, ConvertThenEvalAgainstTheTeacherWritesJson) {
  const fs::path dir = unique_dir("cli_convert_eval");
  const std::string base = (dir / "base").string(), out = (dir / "swiftkv").string();
  ASSERT_EQ(run_swiftkv_command("random-model --preset tiny --dtype f32 --out " + base).status, 0);
  std::ofstream(dir / "data.txt")
      << "Once upon a time there was a cat.\n\nIt sat on a mat and looked at the sun.\n";

  CommandResult converted = run_swiftkv_command("convert -m " + base + " --skip-fraction 0.5 --out " + out);
  ASSERT_EQ(converted.status, 0) << converted.output;
  EXPECT_TRUE(contains(converted.output, "M = 3 of 6 layers, G = 1")) << converted.output;
  EXPECT_TRUE(
      contains(converted.output, "copied: generation_config.json tokenizer.json tokenizer_config.json"))
      << converted.output;

  const std::string json_path = (dir / "eval.json").string();
  CommandResult eval = run_swiftkv_command("eval -m " + out + " --data " + (dir / "data.txt").string() +
                                           " --against-teacher --dtype f32 --threads 1 --json " + json_path);
  ASSERT_EQ(eval.status, 0) << eval.output;
  EXPECT_TRUE(contains(eval.output, "top-1 agreement")) << eval.output;
  nlohmann::json result = read_json_file(json_path);
  for (const char* field :
       {"mean_nll", "tokens", "perplexity", "teacher_mean_nll", "top1_agreement", "mean_kl", "sequences"})
    EXPECT_TRUE(result.contains(field)) << field << " in " << result.dump();
  // A byte-level tokenizer: each paragraph's bytes (the second keeps its final newline) follow BOS.
  EXPECT_EQ(result["tokens"], 33 + 39);
  EXPECT_GE(result["mean_kl"].get<double>(), 0.0);
  EXPECT_NEAR(result["perplexity"].get<double>(), std::exp(result["mean_nll"].get<double>()), 1e-9);
  EXPECT_EQ(result["kv_cache_dtype"], "f32");  // auto with --dtype f32

  // --kv-cache-dtype int8 scores over an int8 KV cache: close to f32, not the same.
  CommandResult int8 = run_swiftkv_command("eval -m " + out + " --data " + (dir / "data.txt").string() +
                                           " --against-teacher --dtype f32 --kv-cache-dtype int8 --threads 1 " +
                                           "--json " + (dir / "int8.json").string());
  ASSERT_EQ(int8.status, 0) << int8.output;
  const nlohmann::json quantized = read_json_file(dir / "int8.json");
  EXPECT_EQ(quantized["kv_cache_dtype"], "int8");
  for (const char* field : {"mean_nll", "teacher_mean_nll"}) {
    const double exact = result[field].get<double>(), int8_nll = quantized[field].get<double>();
    EXPECT_NE(int8_nll, exact) << field;
    EXPECT_NEAR(int8_nll, exact, 0.02 * exact) << field;
  }

  // Evaluating the base alone: no teacher fields.
  CommandResult alone = run_swiftkv_command("eval -m " + base + " --data " + (dir / "data.txt").string() +
                                            " --threads 1 --json " + json_path);
  ASSERT_EQ(alone.status, 0) << alone.output;
  EXPECT_FALSE(read_json_file(json_path).contains("mean_kl"));
}

// bench prefill runs on the KV-cache dtype asked for and reports that dtype's bytes per token
// for each path.
TEST(Cli, BenchPrefillUsesTheKvCacheDtype) {
  const fs::path dir = unique_dir("cli_bench_prefill");
  const std::string model_dir = (dir / "tiny").string();
  ASSERT_EQ(run_swiftkv_command("random-model --preset tiny --swiftkv-layers 2 --out " + model_dir).status, 0);
  const io::ModelConfig config = io::load_model_config(model_dir);
  for (const model::KvDType dtype : {model::KvDType::F32, model::KvDType::BF16, model::KvDType::INT8}) {
    const std::string name = model::kv_dtype_name(dtype);
    CommandResult bench = run_swiftkv_command("bench prefill -m " + model_dir + " --threads 1 --prompt-len 8 " +
                                              "--repeats 1 --decode-tokens 2 --kv-cache-dtype " + name);
    ASSERT_EQ(bench.status, 0) << bench.output;
    EXPECT_TRUE(contains(bench.output, "KV cache " + name)) << bench.output;
    // The rows end with the KV bytes per token: baseline (all layers), then SwiftKV.
    for (const auto& [row, path] : {std::pair{"\nbaseline (all layers) ", model::Path::Teacher},
                                    std::pair{"\nSwiftKV ", model::Path::SwiftKV}}) {
      const size_t begin = bench.output.find(row);
      ASSERT_NE(begin, std::string::npos) << bench.output;
      const std::string line = bench.output.substr(begin + 1, bench.output.find('\n', begin + 1) - begin - 1);
      const std::string bytes = std::to_string(model::kv_bytes_per_token(config, path, dtype));
      EXPECT_EQ(line.substr(line.size() - bytes.size()), bytes) << name << ": " << line;
    }
  }
}

TEST(Cli, MistakesGiveActionableMessagesAndExitOne) {
  const fs::path dir = unique_dir("cli_convert_errors");
  const std::string base = (dir / "base").string();
  ASSERT_EQ(run_swiftkv_command("random-model --preset tiny --out " + base).status, 0);

  CommandResult bad_m =
      run_swiftkv_command("convert -m " + base + " --swiftkv-layers 6 --out " + (dir / "x").string());
  EXPECT_EQ(bad_m.status, 1);
  EXPECT_TRUE(contains(bad_m.output, "--swiftkv-layers 6 is out of range")) << bad_m.output;
  CommandResult bad_g = run_swiftkv_command(
      "convert -m " + base + " --swiftkv-layers 3 --group-size 2 --out " + (dir / "x").string());
  EXPECT_EQ(bad_g.status, 1);
  EXPECT_TRUE(contains(bad_g.output, "must divide the number of SwiftKV layers")) << bad_g.output;
  CommandResult neither = run_swiftkv_command("convert -m " + base + " --out " + (dir / "x").string());
  EXPECT_NE(neither.status, 0);
  EXPECT_TRUE(contains(neither.output, "--swiftkv-layers or --skip-fraction")) << neither.output;
  CommandResult both = run_swiftkv_command(
      "convert -m " + base + " --swiftkv-layers 3 --skip-fraction 0.5 --out " + (dir / "x").string());
  EXPECT_NE(both.status, 0);
  EXPECT_TRUE(contains(both.output, "excludes")) << both.output;
  EXPECT_FALSE(fs::exists(dir / "x"));

  const std::string dropped = (dir / "dropped").string();
  ASSERT_EQ(run_swiftkv_command("convert -m " + base + " --swiftkv-layers 4 --drop-teacher --out " + dropped)
                .status,
            0);
  std::ofstream(dir / "data.txt") << "hello world\n";
  CommandResult off = run_swiftkv_command("eval -m " + dropped + " --data " + (dir / "data.txt").string() +
                                          " --against-teacher");
  EXPECT_EQ(off.status, 1);
  EXPECT_TRUE(contains(off.output, "--drop-teacher")) << off.output;
  CommandResult swiftkv_on =
      run_swiftkv_command("eval -m " + dropped + " --data " + (dir / "data.txt").string());
  EXPECT_EQ(swiftkv_on.status, 0) << swiftkv_on.output;
  CommandResult plain = run_swiftkv_command("eval -m " + base + " --data " + (dir / "data.txt").string() +
                                            " --against-teacher");
  EXPECT_EQ(plain.status, 1);
  EXPECT_TRUE(contains(plain.output, "is not a SwiftKV checkpoint")) << plain.output;

  CommandResult missing = run_swiftkv_command("eval -m " + base + " --data " + (dir / "nope.txt").string());
  EXPECT_EQ(missing.status, 1);
  EXPECT_TRUE(contains(missing.output, "nope.txt does not exist")) << missing.output;
  std::ofstream(dir / "empty.txt").close();
  CommandResult empty = run_swiftkv_command("eval -m " + base + " --data " + (dir / "empty.txt").string());
  EXPECT_EQ(empty.status, 1);
  EXPECT_TRUE(contains(empty.output, "empty.txt is empty")) << empty.output;
  std::ofstream(dir / "bad.txt", std::ios::binary) << "ok\n\xff\xfe";
  CommandResult invalid = run_swiftkv_command("eval -m " + base + " --data " + (dir / "bad.txt").string());
  EXPECT_EQ(invalid.status, 1);
  EXPECT_TRUE(contains(invalid.output, "is not valid UTF-8: byte 0xff at offset 3 (line 2)"))
      << invalid.output;
  CommandResult teacher = run_swiftkv_command("eval -m " + base + " --data " + (dir / "data.txt").string() +
                                              " --teacher " + dropped + " --against-teacher");
  EXPECT_NE(teacher.status, 0);
  EXPECT_TRUE(contains(teacher.output, "excludes")) << teacher.output;
}

}  // namespace
}  // namespace swiftkv
