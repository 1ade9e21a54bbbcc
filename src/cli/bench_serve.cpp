// swiftkv bench serve: load on a running OpenAI-compatible server (swiftkv serve, llama-server, vLLM),
// with vLLM's benchmark_serving.py metrics (server/load_generator.h).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>

#include "cli/commands.h"
#include "common/error.h"
#include "common/files.h"
#include "server/load_generator.h"

namespace swiftkv::cli {

namespace {

struct ServeBenchOptions {
  server::LoadOptions load;
  server::PromptOptions prompts;
  std::string request_rate = "inf";
  std::string json_path;
};

double parse_request_rate(const std::string& text) {
  if (text == "inf") return std::numeric_limits<double>::infinity();
  size_t used = 0;
  double rate = 0;
  try {
    rate = std::stod(text, &used);
  } catch (const std::exception&) {
  }
  if (used != text.size() || !(rate > 0) || !std::isfinite(rate))
    throw Error("--request-rate " + text + " is neither a positive number of requests per second nor inf");
  return rate;
}

void print_failures(const std::vector<server::RequestResult>& results) {
  std::map<std::string, int> counts;
  for (const auto& result : results)
    if (!result.success) ++counts[result.error];
  for (const auto& [error, count] : counts) std::printf("  %d failed: %s\n", count, error.c_str());
}

nlohmann::json run_json(const ServeBenchOptions& options, const server::BenchmarkMetrics& metrics,
                        const server::BenchmarkRun& run) {
  nlohmann::json json = server::metrics_json(metrics, run.results);
  json["url"] = options.load.url;
  json["endpoint"] = options.load.endpoint;
  json["model_id"] = options.load.model;
  json["num_prompts"] = options.prompts.num_prompts;
  json["input_len"] = options.prompts.input_len;
  json["output_len"] = options.load.output_len;
  json["prefix_len"] = options.prompts.prefix_len;
  json["dataset"] = options.prompts.dataset_path;
  json["tokenizer"] = options.prompts.tokenizer_dir;
  json["request_rate"] = std::isinf(options.load.request_rate) ? nlohmann::json("inf")
                                                               : nlohmann::json(options.load.request_rate);
  json["max_concurrency"] = options.load.max_concurrency > 0 ? nlohmann::json(options.load.max_concurrency)
                                                             : nlohmann::json(nullptr);
  json["seed"] = options.prompts.seed;
  return json;
}

void run_serve_bench(ServeBenchOptions& options) {
  options.load.request_rate = parse_request_rate(options.request_rate);
  options.load.seed = options.prompts.seed;
  if (options.load.api_key.empty())
    if (const char* key = std::getenv("OPENAI_API_KEY")) options.load.api_key = key;
  if (options.load.model.empty()) options.load.model = server::first_served_model(options.load);
  const std::vector<server::Prompt> prompts = server::make_prompts(options.prompts);

  std::printf("Model %s at %s (POST %s); %lld prompts, %lld output tokens each\n", options.load.model.c_str(),
              options.load.url.c_str(), options.load.endpoint.c_str(), (long long)prompts.size(),
              (long long)options.load.output_len);
  std::printf("Starting initial single prompt test run...\n");
  std::fflush(stdout);
  const server::RequestResult test = server::send_completion(
      options.load,
      server::completion_request_body(options.load.model, prompts.front(), options.load.output_len));
  if (!test.success)
    throw Error("the test request failed (check --url, --endpoint, --model and the server's log): " +
                test.error);
  std::printf("Traffic request rate: %s\n", options.request_rate.c_str());
  std::printf("Maximum request concurrency: %s\n", options.load.max_concurrency > 0
                                                       ? std::to_string(options.load.max_concurrency).c_str()
                                                       : "None");
  std::fflush(stdout);

  const server::BenchmarkRun run = server::run_benchmark(options.load, prompts);
  const server::BenchmarkMetrics metrics = server::calculate_metrics(run.results, run.duration_s);
  std::printf("%s", server::format_report(metrics).c_str());
  print_failures(run.results);
  if (!options.json_path.empty()) write_json_file(options.json_path, run_json(options, metrics, run));
}

}  // namespace

void add_bench_serve_command(CLI::App& bench) {
  auto options = std::make_shared<ServeBenchOptions>();
  CLI::App* serve = bench.add_subcommand(
      "serve",
      "Load an OpenAI-compatible server (swiftkv serve, llama-server, vLLM) with streamed completions");
  serve->add_option("--url", options->load.url, "server base URL")->capture_default_str();
  serve->add_option("--endpoint", options->load.endpoint, "completions path")->capture_default_str();
  serve->add_option("--model", options->load.model,
                    "model name to request (default: the first of GET /v1/models)");
  serve->add_option("--api-key", options->load.api_key,
                    "sent as Authorization: Bearer (default: $OPENAI_API_KEY)");
  serve->add_option("--num-prompts", options->prompts.num_prompts, "requests to send")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40))
      ->capture_default_str();
  serve
      ->add_option("--input-len", options->prompts.input_len,
                   "prompt tokens after the shared prefix (with --dataset: paragraphs are cut to this, needs "
                   "--tokenizer)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40))
      ->capture_default_str();
  serve->add_option("--output-len", options->load.output_len, "max_tokens of each request (EOS ignored)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40))
      ->capture_default_str();
  serve
      ->add_option("--prefix-len", options->prompts.prefix_len,
                   "tokens every prompt starts with (prefix caching)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40))
      ->capture_default_str();
  serve
      ->add_option("--request-rate", options->request_rate,
                   "requests per second, Poisson arrivals; inf sends all at once")
      ->capture_default_str();
  serve
      ->add_option("--max-concurrency", options->load.max_concurrency,
                   "most requests in flight (default: no limit)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  serve->add_option("--seed", options->prompts.seed, "seed of the prompts and the arrival times")
      ->capture_default_str();
  serve->add_option(
      "--tokenizer", options->prompts.tokenizer_dir,
      "model directory whose tokenizer makes text prompts of exact token counts (default: token-id "
      "prompts)");
  serve->add_option("--min-token-id", options->prompts.min_token_id, "smallest id of token-id prompts")
      ->capture_default_str();
  serve->add_option("--max-token-id", options->prompts.max_token_id, "largest id of token-id prompts")
      ->capture_default_str();
  serve->add_option("--dataset", options->prompts.dataset_path,
                    "plain text file whose paragraphs are the prompts (default: random prompts)");
  serve->add_option("--timeout", options->load.timeout_s, "seconds to wait for a response's next bytes")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  serve->add_option("--json", options->json_path, "also write the results (and per-request arrays) here");
  serve->callback([options] { run_serve_bench(*options); });
}

}  // namespace swiftkv::cli
