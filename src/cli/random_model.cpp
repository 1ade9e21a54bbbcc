// swiftkv random-model: a checkpoint of a real model's shape with random weights, for speed work.
#include "io/random_model.h"

#include <iostream>
#include <optional>

#include "cli/commands.h"

namespace swiftkv::cli {

void add_random_model_command(CLI::App& app) {
  struct Options {
    std::string preset, out, dtype = "bf16";
    std::optional<int64_t> swiftkv_layers;
    int64_t group_size = 1;
    uint64_t seed = 0;
  };
  auto options = std::make_shared<Options>();
  std::string presets;
  for (const auto& name : io::random_model_presets()) presets += (presets.empty() ? "" : ", ") + name;
  CLI::App* command = app.add_subcommand("random-model", "Write a random-weight model of a real shape");
  command->add_option("--preset", options->preset, presets)->required();
  command->add_option("--swiftkv-layers", options->swiftkv_layers,
                      "M: layers that every prompt token runs (default: all = a plain model)");
  command->add_option("--group-size", options->group_size, "AcrossKV group size G")->capture_default_str();
  command->add_option("--seed", options->seed, "random seed")->capture_default_str();
  command->add_option("--dtype", options->dtype, "stored dtype")
      ->check(CLI::IsMember({"bf16", "f32"}))
      ->capture_default_str();
  command->add_option("--out", options->out, "output directory (must not exist)")->required();
  command->callback([options] {
    io::write_random_model(options->preset, options->swiftkv_layers, options->group_size, options->out,
                           options->seed, options->dtype == "f32" ? io::DType::F32 : io::DType::BF16);
    std::cout << "wrote " << options->out << "\n";
  });
}

}  // namespace swiftkv::cli
