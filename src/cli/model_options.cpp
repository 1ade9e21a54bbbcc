#include <sys/resource.h>

#include <cstdio>
#include <thread>

#include "cli/commands.h"
#include "kernels/gemm.h"

namespace swiftkv::cli {

void add_model_options(CLI::App& command, ModelOptions& options) {
  command.add_option("-m,--model", options.model_dir, "Hugging Face model directory")->required();
  command.add_option("--dtype", options.dtype, "weight type for compute")
      ->check(CLI::IsMember({"bf16", "f32"}))
      ->capture_default_str();
  command.add_option("--threads", options.threads, "threads (default: all cores)")
      ->check(CLI::Range(0, 1 << 30));
  command
      .add_option("--swiftkv", options.swiftkv, "on: the checkpoint's SwiftKV path; off: the original model")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  command
      .add_option("--kv-cache-dtype", options.kv_cache_dtype,
                  "KV cache element type; auto: f32 with --dtype f32, else bf16 (int8: one scale per token "
                  "and KV head)")
      ->check(CLI::IsMember({"auto", "f32", "bf16", "int8"}))
      ->capture_default_str();
}

model::Path selected_path(const ModelOptions& options) {
  return options.swiftkv == "off" ? model::Path::Teacher : model::Path::SwiftKV;
}

model::KvDType selected_kv_dtype(const ModelOptions& options) {
  if (options.kv_cache_dtype == "auto")
    return options.dtype == "f32" ? model::KvDType::F32 : model::KvDType::BF16;
  return model::parse_kv_dtype(options.kv_cache_dtype);
}

std::unique_ptr<model::Model> load_model(const ModelOptions& options, bool load_teacher, bool load_student) {
  int threads = options.threads > 0 ? options.threads : static_cast<int>(std::thread::hardware_concurrency());
  kernels::set_num_threads(threads);
  model::LoadOptions load;
  load.weight_type = options.dtype == "f32" ? kernels::WeightType::F32 : kernels::WeightType::BF16;
  load.load_teacher = load_teacher;
  load.load_student = load_student;
  return model::Model::load(options.model_dir, load);
}

size_t peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<size_t>(usage.ru_maxrss) * 1024;
}

std::string format_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  while (bytes >= 1024 && unit < 4) {
    bytes /= 1024;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof text, unit == 0 ? "%.0f %s" : "%.2f %s", bytes, units[unit]);
  return text;
}

}  // namespace swiftkv::cli
