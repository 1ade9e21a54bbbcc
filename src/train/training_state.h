#pragma once
// A distillation run's resumable state on disk (no libtorch here):
//   OUT/checkpoints/step-N/state.json         step, epoch, data position, RNG state, the flags
//   OUT/checkpoints/step-N/model.safetensors      trainable tensors (f32) and Adam's moments
//   OUT/checkpoints/latest                     "step-N": the last checkpoint written completely
// step-N is written into a temporary sibling (each file fsynced), renamed into place, the
// directory fsynced, and only then `latest` is replaced atomically; older checkpoints are
// pruned after that. A kill at any moment leaves `latest` naming a complete checkpoint.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace swiftkv::train {

struct NamedTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> values;
};

struct TrainingState {
  int64_t step = 0;             // optimizer steps done
  int64_t epoch = 0;            // current pass over the data
  int64_t position = 0;         // sequences of this epoch's order already consumed
  std::string epoch_rng_state;  // the shuffling RNG before this epoch's order was drawn
  nlohmann::json options;       // the run's flags (checked on --resume)
  std::vector<NamedTensor> parameters, exp_avg, exp_avg_sq;  // same names and order
};

// Writes checkpoints_dir/step-N (see above) and points `latest` at it; keeps the newest
// `keep` checkpoints. Returns the checkpoint's directory.
// before_publish (tests) runs after the files are written, before the rename.
std::filesystem::path save_training_state(const std::filesystem::path& checkpoints_dir,
                                          const TrainingState& state, int keep = 2,
                                          const std::function<void()>& before_publish = {});

// The checkpoint `latest` names, or nullopt when there is none. Throws swiftkv::Error when
// `latest` names a missing or broken checkpoint.
std::optional<TrainingState> load_latest_training_state(const std::filesystem::path& checkpoints_dir);

}  // namespace swiftkv::train
