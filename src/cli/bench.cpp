// swiftkv bench prefill: prompt throughput of the baseline and the SwiftKV path side by side
// on the same checkpoint (plus decode speed and peak memory).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>

#include "cli/commands.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"

namespace swiftkv::cli {

namespace {

struct BenchOptions {
  ModelOptions model;
  int64_t prompt_length = 512;
  int repeats = 3;
  int decode_tokens = 16;
  uint64_t seed = 0;
};

bool checkpoint_has_teacher(const std::string& model_dir, const io::ModelConfig& config) {
  io::TensorStore store = io::TensorStore::open(model_dir);
  for (const auto& tensor : io::teacher_tensors(config))
    if (!store.contains(tensor.name)) return false;
  return true;
}

// Multiply-adds of the projections a prefill of `tokens` runs (attention scores excluded).
double prefill_linear_flops(const io::ModelConfig& c, model::Path path, double tokens) {
  const double H = c.hidden_size, F = c.intermediate_size, q = c.num_attention_heads * c.head_dim,
               kv = c.num_key_value_heads * c.head_dim;
  const double layer = H * (q + 2 * kv) + q * H + 3 * H * F;
  const double L = c.num_hidden_layers, M = path == model::Path::Teacher ? L : c.num_key_value_layers;
  const double all_tokens = M * layer + (L - M) / c.key_value_group_size * 2 * kv * H;
  const double last_token = (L - M) * (layer - 2 * kv * H) + H * c.vocab_size;
  return 2 * (tokens * all_tokens + last_token);
}

double seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void run_prefill_bench(const BenchOptions& options) {
  io::ModelConfig config = io::load_model_config(options.model.model_dir);
  const bool compare = config.swiftkv() && checkpoint_has_teacher(options.model.model_dir, config);
  auto model = load_model(options.model, compare, /*load_student=*/true);
  const model::KvDType kv_dtype = selected_kv_dtype(options.model);
  const size_t rss_after_load = peak_rss_bytes();

  std::vector<model::Path> paths;
  if (compare) paths.push_back(model::Path::Teacher);
  paths.push_back(model::Path::SwiftKV);
  std::mt19937_64 rng(options.seed);
  std::vector<int32_t> prompt(static_cast<size_t>(options.prompt_length));
  for (auto& token : prompt) token = static_cast<int32_t>(rng() % static_cast<uint64_t>(config.vocab_size));

  std::printf(
      "model %s: %lld layers, SwiftKV M=%lld G=%lld, weights %s (%s), KV cache %s, %d repeats of a %lld-token "
      "prompt\n",
      options.model.model_dir.c_str(), (long long)config.num_hidden_layers,
      (long long)config.num_key_value_layers, (long long)config.key_value_group_size,
      format_bytes(static_cast<double>(model->weight_bytes())).c_str(), options.model.dtype.c_str(),
      model::kv_dtype_name(kv_dtype), options.repeats, (long long)options.prompt_length);
  std::printf("%-22s %14s %14s %16s %14s %14s\n", "path", "prefill tok/s", "best tok/s", "linear TFLOP/s",
              "decode tok/s", "KV bytes/tok");
  double baseline_rate = 0;
  for (model::Path path : paths) {
    const int64_t capacity = options.prompt_length + options.decode_tokens + 1;
    std::vector<double> times;
    for (int run = 0; run <= options.repeats; ++run) {  // run 0 warms up (primitive creation, page faults)
      model::KvCache cache = model->make_cache(capacity, path, kv_dtype);
      auto start = std::chrono::steady_clock::now();
      model->forward(prompt, 0, cache, path, model::Logits::Last);
      if (run > 0) times.push_back(seconds(start));
    }
    std::sort(times.begin(), times.end());
    const double median = times[times.size() / 2], best = times.front();

    model::KvCache cache = model->make_cache(capacity, path, kv_dtype);
    model->forward(prompt, 0, cache, path, model::Logits::Last);
    int32_t token = prompt.back();
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < options.decode_tokens; ++i)
      model->forward(std::span<const int32_t>(&token, 1), options.prompt_length + i, cache, path,
                     model::Logits::Last);
    const double decode_rate = options.decode_tokens > 0 ? options.decode_tokens / seconds(start) : 0.0;

    const double rate = static_cast<double>(options.prompt_length) / median;
    const char* name =
        path == model::Path::Teacher ? "baseline (all layers)" : (compare ? "SwiftKV" : "model");
    std::printf(
        "%-22s %14.1f %14.1f %16.3f %14.2f %14lld\n", name, rate, options.prompt_length / best,
        prefill_linear_flops(config, path, static_cast<double>(options.prompt_length)) / median / 1e12,
        decode_rate, (long long)model->kv_bytes_per_token(path, kv_dtype));
    if (path == model::Path::Teacher)
      baseline_rate = rate;
    else if (baseline_rate > 0)
      std::printf("SwiftKV / baseline prefill throughput: %.2fx\n", rate / baseline_rate);
  }
  std::printf("peak RSS: %s after load, %s at the end\n",
              format_bytes(static_cast<double>(rss_after_load)).c_str(),
              format_bytes(static_cast<double>(peak_rss_bytes())).c_str());
  if (!compare && config.swiftkv())
    std::printf("(the checkpoint has no teacher q/k/v, so there is no baseline to compare with)\n");
}

}  // namespace

void add_bench_serve_command(CLI::App& bench);  // bench_serve.cpp

void add_bench_command(CLI::App& app) {
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks");
  bench->require_subcommand(1);
  auto options = std::make_shared<BenchOptions>();
  CLI::App* prefill = bench->add_subcommand(
      "prefill", "Prefill throughput, baseline vs SwiftKV on one checkpoint (random prompt tokens)");
  add_model_options(*prefill, options->model);
  prefill->add_option("--prompt-len", options->prompt_length, "prompt tokens")
      ->check(CLI::Range(1, 1 << 30))
      ->capture_default_str();
  prefill->add_option("--repeats", options->repeats, "timed runs (median reported)")
      ->check(CLI::Range(1, 1 << 30))
      ->capture_default_str();
  prefill->add_option("--decode-tokens", options->decode_tokens, "decode steps timed after the prompt")
      ->check(CLI::Range(0, 1 << 30))
      ->capture_default_str();
  prefill->add_option("--seed", options->seed, "seed of the random prompt")->capture_default_str();
  prefill->callback([options] { run_prefill_bench(*options); });
  add_bench_serve_command(*bench);
}

}  // namespace swiftkv::cli
