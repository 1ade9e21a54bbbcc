// swiftkv eval: perplexity of a text, and agreement with a teacher (another checkpoint, or the
// same one with SwiftKV off).
#include "runtime/eval.h"

#include <cstdio>
#include <iostream>
#include <thread>

#include "cli/commands.h"
#include "common/error.h"
#include "common/files.h"

namespace swiftkv::cli {
namespace {

struct EvalOptions {
  ModelOptions model;
  std::string data, teacher_dir, json_out;
  bool against_teacher = false;
  int64_t max_len = 512;
};

// Distributions are compared token id by token id: both checkpoints must tokenize alike.
void check_same_tokenizer(const std::string& model_dir, const std::string& teacher_dir) {
  const nlohmann::json model_tokenizer = read_json_file(std::filesystem::path(model_dir) / "tokenizer.json");
  const nlohmann::json teacher_tokenizer =
      read_json_file(std::filesystem::path(teacher_dir) / "tokenizer.json");
  if (model_tokenizer != teacher_tokenizer)
    throw Error("the teacher " + teacher_dir + " has a different tokenizer.json from " + model_dir +
                "; eval compares next-token distributions, which needs the same tokenizer");
}

void run_eval(const EvalOptions& options) {
  if (options.against_teacher && options.model.swiftkv == "off")
    throw Error(
        "--against-teacher compares the SwiftKV path with the teacher; it cannot be used with "
        "--swiftkv off");
  const std::string text = runtime::read_eval_text(options.data);
  auto tokenizer = tokenizer::Tokenizer::from_dir(options.model.model_dir);
  const auto sequences = runtime::eval_sequences(tokenizer, text, options.max_len);

  const model::Path path = selected_path(options.model);
  const model::KvDType kv_dtype = selected_kv_dtype(options.model);  // the model's and the teacher's
  auto model = load_model(options.model, options.against_teacher || path == model::Path::Teacher);
  if (options.against_teacher && !model->config().swiftkv())
    throw Error(options.model.model_dir +
                " is not a SwiftKV checkpoint, so it has no teacher path; use "
                "--teacher DIR to compare it with another model");
  std::unique_ptr<model::Model> teacher_model;
  std::optional<runtime::ScoredModel> teacher;
  std::string teacher_name;
  if (!options.teacher_dir.empty()) {
    check_same_tokenizer(options.model.model_dir, options.teacher_dir);
    ModelOptions teacher_options = options.model;
    teacher_options.model_dir = options.teacher_dir;
    teacher_options.swiftkv = "on";
    teacher_model = load_model(teacher_options, /*load_teacher=*/false);
    teacher.emplace(runtime::ScoredModel{*teacher_model, model::Path::SwiftKV, kv_dtype});
    teacher_name = options.teacher_dir;
  } else if (options.against_teacher) {
    teacher.emplace(runtime::ScoredModel{*model, model::Path::Teacher, kv_dtype});
    teacher_name = "same checkpoint, SwiftKV off";
  }

  int64_t next_report = 0;
  const runtime::EvalResult result =
      runtime::evaluate({*model, path, kv_dtype}, sequences, teacher, [&](int64_t done, int64_t total, int64_t tokens) {
        if (done * 20 < next_report * total && done != total) return;  // about every 5%
        next_report = done * 20 / total + 1;
        std::fprintf(stderr, "\r%lld/%lld sequences, %lld tokens", (long long)done, (long long)total,
                     (long long)tokens);
        if (done == total) std::fprintf(stderr, "\n");
      });

  const std::string model_label = path == model::Path::Teacher ? "model (SwiftKV off)" : "model";
  std::printf("%-22s %12s %12s %10s\n", "", "mean NLL", "perplexity", "tokens");
  std::printf("%-22s %12.5f %12.4f %10lld\n", model_label.c_str(), result.mean_nll, result.perplexity,
              (long long)result.tokens);
  if (result.has_teacher) {
    std::printf("%-22s %12.5f %12.4f %10lld\n", "teacher", result.teacher_mean_nll, result.teacher_perplexity,
                (long long)result.tokens);
    std::printf("teacher: %s\n", teacher_name.c_str());
    std::printf("top-1 agreement:        %.5f\n", result.top1_agreement);
    std::printf("mean KL(teacher||model): %.6f nats/token\n", result.mean_kl);
  }
  std::printf("%lld sequences (max %lld tokens) in %.1f s, %.0f tokens/s, %s, KV cache %s, %d threads\n",
              (long long)result.sequences, (long long)options.max_len, result.seconds,
              static_cast<double>(result.tokens) / result.seconds, options.model.dtype.c_str(),
              model::kv_dtype_name(kv_dtype),
              options.model.threads > 0 ? options.model.threads
                                        : static_cast<int>(std::thread::hardware_concurrency()));

  if (!options.json_out.empty()) {
    nlohmann::json out = {{"model", options.model.model_dir}, {"data", options.data},
                          {"dtype", options.model.dtype},     {"swiftkv", options.model.swiftkv},
                          {"kv_cache_dtype", model::kv_dtype_name(kv_dtype)},
                          {"max_len", options.max_len},       {"sequences", result.sequences},
                          {"tokens", result.tokens},          {"mean_nll", result.mean_nll},
                          {"perplexity", result.perplexity},  {"seconds", result.seconds}};
    if (result.has_teacher) {
      out["teacher"] = options.against_teacher ? "against-teacher" : options.teacher_dir;
      out["teacher_mean_nll"] = result.teacher_mean_nll;
      out["teacher_perplexity"] = result.teacher_perplexity;
      out["top1_agreement"] = result.top1_agreement;
      out["mean_kl"] = result.mean_kl;
    }
    write_json_file(options.json_out, out);
  }
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto options = std::make_shared<EvalOptions>();
  CLI::App* command = app.add_subcommand(
      "eval",
      "Mean NLL / perplexity of a text; with a teacher also top-1 agreement and mean KL(teacher||model)");
  add_model_options(*command, options->model);
  command->add_option("--data", options->data, "UTF-8 text; paragraphs (split on blank lines) are scored")
      ->required();
  auto* teacher = command->add_option("--teacher", options->teacher_dir,
                                      "teacher checkpoint with the same tokenizer (run on its own path)");
  auto* against = command->add_flag("--against-teacher", options->against_teacher,
                                    "teacher = this checkpoint with SwiftKV off (needs the teacher q/k/v)");
  teacher->excludes(against);
  command
      ->add_option("--max-len", options->max_len, "tokens per paragraph (BOS included); longer ones are cut")
      ->capture_default_str();
  command->add_option("--json", options->json_out, "also write the figures as JSON to this file");
  command->callback([options] { run_eval(*options); });
}

}  // namespace swiftkv::cli
