// swiftkv convert: base Hugging Face checkpoint -> SwiftKV checkpoint, initialised for distillation.
#include "io/convert.h"

#include <cstdio>
#include <iostream>

#include "cli/commands.h"

namespace swiftkv::cli {

void add_convert_command(CLI::App& app) {
  struct Options {
    std::string base, out;
    io::ConvertOptions convert;
  };
  auto options = std::make_shared<Options>();
  CLI::App* command =
      app.add_subcommand("convert",
                         "Turn a base Llama / Qwen2 checkpoint into a SwiftKV checkpoint (initialised "
                         "from the base, ready for distillation)");
  command->add_option("-m,--model", options->base, "base Hugging Face model directory")->required();
  auto* layers = command->add_option_function<int64_t>(
      "--swiftkv-layers", [options](int64_t m) { options->convert.swiftkv_layers = m; },
      "M: layers every prompt token runs (1 <= M < L); layers M..L-1 get their K/V from layer M's input");
  auto* fraction = command->add_option_function<double>(
      "--skip-fraction", [options](double f) { options->convert.skip_fraction = f; },
      "F: fraction of layers to skip for prompt tokens; L - M = F * L rounded to the nearest multiple of G "
      "(ties: fewer skipped)");
  layers->excludes(fraction);
  command
      ->add_option("--group-size", options->convert.group_size, "G: AcrossKV group size ((L - M) % G == 0)")
      ->capture_default_str();
  command->add_flag(
      "--drop-teacher", options->convert.drop_teacher,
      "leave out the original q/k/v of layers >= M (smaller; runs SwiftKV only, cannot be distilled)");
  command
      ->add_option("--max-shard-size", options->convert.max_shard_bytes,
                   "largest safetensors shard, e.g. 5GB or 500MB (larger models are sharded with an index)")
      ->transform(CLI::AsSizeValue(/*kb_is_1000=*/true))
      ->default_str("5GB");
  command->add_option("--out", options->out, "output directory (must not exist or be empty)")->required();
  command->callback([options] {
    if (!options->convert.swiftkv_layers && !options->convert.skip_fraction)
      throw CLI::RequiredError("--swiftkv-layers or --skip-fraction");
    io::ConvertResult result = io::convert_to_swiftkv(options->base, options->out, options->convert);
    const io::ModelConfig& c = result.config;
    std::printf("wrote %s: %s, M = %lld of %lld layers, G = %lld", options->out.c_str(), c.model_type.c_str(),
                (long long)c.num_key_value_layers, (long long)c.num_hidden_layers,
                (long long)c.key_value_group_size);
    if (c.key_value_group_size > 1)
      std::printf(" (%lld KV caches instead of %lld)", (long long)c.num_kv_caches(),
                  (long long)c.num_hidden_layers);
    std::printf("\n");
    std::printf(
        "tensors: %lld copied, %lld new (norm_swiftkv, *_swiftkv), %lld teacher tensors dropped; "
        "%.1f MB in %lld file%s\n",
        (long long)result.copied_tensors, (long long)result.new_tensors, (long long)result.dropped_tensors,
        static_cast<double>(result.tensor_bytes) / 1e6, (long long)result.shards,
        result.shards == 1 ? "" : "s");
    std::string copied, skipped;
    for (const auto& name : result.copied_files) copied += " " + name;
    for (const auto& name : result.skipped_files) skipped += " " + name;
    if (!copied.empty()) std::printf("copied:%s\n", copied.c_str());
    if (!skipped.empty())
      std::printf("not copied (other weights, folders, hidden files):%s\n", skipped.c_str());
  });
}

}  // namespace swiftkv::cli
