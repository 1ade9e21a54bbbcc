// swiftkv generate: stream one completion for a prompt, then report prompt and generation speed.
#include <cstdio>
#include <iostream>
#include <optional>

#include "cli/commands.h"
#include "io/model_config.h"
#include "runtime/generator.h"
#include "tokenizer/tokenizer.h"

namespace swiftkv::cli {

namespace {

struct GenerateOptions {
  ModelOptions model;
  std::string prompt;
  int32_t max_tokens = 256;
  std::optional<float> temperature, top_p, min_p, repetition_penalty;
  std::optional<int32_t> top_k;
  float presence_penalty = 0, frequency_penalty = 0;
  uint64_t seed = 0;
  std::vector<std::string> stop;
  bool ignore_eos = false;
};

// Program defaults (vLLM's), then generation_config.json, then the command line.
runtime::SamplingParams sampling_params(const GenerateOptions& options) {
  runtime::SamplingParams params =
      runtime::default_sampling_params(io::load_generation_defaults(options.model.model_dir));
  if (options.temperature) params.temperature = *options.temperature;
  if (options.top_p) params.top_p = *options.top_p;
  if (options.min_p) params.min_p = *options.min_p;
  if (options.top_k) params.top_k = *options.top_k;
  if (options.repetition_penalty) params.repetition_penalty = *options.repetition_penalty;
  params.presence_penalty = options.presence_penalty;
  params.frequency_penalty = options.frequency_penalty;
  params.seed = options.seed;
  return params;
}

void run_generate(const GenerateOptions& options) {
  model::Path path = selected_path(options.model);
  auto model = load_model(options.model, path == model::Path::Teacher, path == model::Path::SwiftKV);
  auto tokenizer = tokenizer::Tokenizer::from_dir(options.model.model_dir);
  runtime::EngineRequest request;
  request.prompt = tokenizer.encode(options.prompt, /*add_special_tokens=*/true);
  request.max_tokens = options.max_tokens;
  request.sampling = sampling_params(options);
  request.stop = options.stop;
  request.ignore_eos = options.ignore_eos;

  runtime::Generator generator(*model, tokenizer, path, selected_kv_dtype(options.model));
  std::cout << options.prompt << std::flush;
  runtime::GenerationResult result =
      generator.generate(request, [](std::string_view text) { std::cout << text << std::flush; });
  std::cout << std::endl;
  const double prompt_tokens = static_cast<double>(request.prompt.size());
  const double decoded = static_cast<double>(result.tokens.size()) - 1;  // the first came with the prompt
  std::fprintf(stderr, "prompt: %.0f tokens in %.3f s (%.1f tokens/s)\n", prompt_tokens,
               result.prompt_seconds, prompt_tokens / result.prompt_seconds);
  if (decoded > 0)
    std::fprintf(stderr, "generation: %.0f tokens in %.3f s (%.1f tokens/s)\n", decoded,
                 result.generation_seconds, decoded / result.generation_seconds);
  std::fprintf(stderr, "finish: %s\n", runtime::finish_reason_name(result.finish_reason));
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto options = std::make_shared<GenerateOptions>();
  CLI::App* command = app.add_subcommand("generate", "Generate text from a prompt (streams to stdout)");
  add_model_options(*command, options->model);
  command->add_option("-p,--prompt", options->prompt,
                      "prompt text (BOS is added when the tokenizer adds one)");
  command->add_option("-n,--max-tokens", options->max_tokens, "tokens to generate at most")
      ->capture_default_str();
  command->add_option("--temp,--temperature", options->temperature,
                      "0 = greedy (default: generation_config or 1.0)");
  command->add_option("--top-p", options->top_p, "nucleus sampling");
  command->add_option("--top-k", options->top_k, "keep the k most likely tokens (0 = off)");
  command->add_option("--min-p", options->min_p, "drop tokens below min_p x the top probability");
  command->add_option("--repeat-penalty,--repetition-penalty", options->repetition_penalty,
                      "> 1 discourages repeats");
  command->add_option("--presence-penalty", options->presence_penalty,
                      "subtracted once per generated token seen");
  command->add_option("--frequency-penalty", options->frequency_penalty, "subtracted per occurrence");
  command->add_option("--seed", options->seed, "random seed")->capture_default_str();
  command->add_option("--stop", options->stop, "stop strings (repeatable)");
  command->add_flag("--ignore-eos", options->ignore_eos, "keep generating past eos");
  command->callback([options] { run_generate(*options); });
}

}  // namespace swiftkv::cli
