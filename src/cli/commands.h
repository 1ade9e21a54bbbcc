#pragma once
// Subcommands of the swiftkv program, one file each, and the options they share.
#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "model/model.h"

namespace swiftkv::cli {

void add_generate_command(CLI::App& app);
void add_inspect_command(CLI::App& app);
void add_import_command(CLI::App& app);
void add_random_model_command(CLI::App& app);
void add_bench_command(CLI::App& app);
#ifdef SWIFTKV_HAVE_TRAINER
void add_distill_command(CLI::App& app);  // only with the trainer (libtorch)
#endif
void add_convert_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_serve_command(CLI::App& app);

// -m, --dtype, --threads, --swiftkv, --kv-cache-dtype: how to load and run a model.
struct ModelOptions {
  std::string model_dir;
  std::string dtype = "bf16";
  int threads = 0;  // 0: all cores
  std::string swiftkv = "on";
  std::string kv_cache_dtype = "auto";
};
void add_model_options(CLI::App& command, ModelOptions& options);
model::Path selected_path(const ModelOptions& options);
// --kv-cache-dtype; auto: f32 with --dtype f32 (an exact run), else bf16.
model::KvDType selected_kv_dtype(const ModelOptions& options);
// Sets the thread count, then loads the weights of the teacher path, the SwiftKV path or both.
std::unique_ptr<model::Model> load_model(const ModelOptions& options, bool load_teacher,
                                         bool load_student = true);

// Peak resident memory of this process so far, in bytes.
size_t peak_rss_bytes();
std::string format_bytes(double bytes);

}  // namespace swiftkv::cli
