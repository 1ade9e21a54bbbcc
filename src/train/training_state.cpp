#include "train/training_state.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>

#include "common/error.h"
#include "common/files.h"
#include "io/model_dir.h"
#include "io/safetensors.h"

namespace swiftkv::train {

namespace fs = std::filesystem;

namespace {

const char* kParameter = "parameter/";
const char* kExpAvg = "exp_avg/";
const char* kExpAvgSq = "exp_avg_sq/";

std::string step_name(int64_t step) { return "step-" + std::to_string(step); }

int64_t step_of(const std::string& name) {
  if (name.rfind("step-", 0) != 0) return -1;
  try {
    size_t used = 0;
    const int64_t step = std::stoll(name.substr(5), &used);
    return used == name.size() - 5 ? step : -1;
  } catch (...) {
    return -1;
  }
}

std::string read_latest(const fs::path& checkpoints_dir) {
  std::ifstream in(checkpoints_dir / "latest");
  std::string name;
  in >> name;
  return name;
}

}  // namespace

fs::path save_training_state(const fs::path& checkpoints_dir, const TrainingState& state, int keep,
                             const std::function<void()>& before_publish) {
  fs::create_directories(checkpoints_dir);
  const fs::path target = checkpoints_dir / step_name(state.step);
  // A step-N that `latest` does not name is the leftover of a run killed between the rename
  // and the pointer update: incomplete by definition of `latest`, so it may be replaced.
  if (fs::exists(target)) {
    if (read_latest(checkpoints_dir) == step_name(state.step)) return target;  // already saved
    fs::remove_all(target);
  }
  io::write_model_directory(target, [&](const fs::path& staging) {
    std::vector<io::TensorToWrite> tensors;
    std::vector<std::string> names;  // keep the strings alive
    names.reserve(state.parameters.size() * 3);
    auto add = [&](const char* prefix, const std::vector<NamedTensor>& list) {
      for (const NamedTensor& tensor : list) {
        names.push_back(prefix + tensor.name);
        tensors.push_back({names.back(), io::DType::F32, tensor.shape, tensor.values.data()});
      }
    };
    add(kParameter, state.parameters);
    add(kExpAvg, state.exp_avg);
    add(kExpAvgSq, state.exp_avg_sq);
    io::write_safetensors(staging / "model.safetensors", tensors);
    nlohmann::json json = {{"step", state.step},         {"epoch", state.epoch},
                           {"position", state.position}, {"epoch_rng_state", state.epoch_rng_state},
                           {"options", state.options},   {"parameter_names", nlohmann::json::array()}};
    for (const NamedTensor& tensor : state.parameters) json["parameter_names"].push_back(tensor.name);
    write_json_file(staging / "state.json", json);
    if (before_publish) before_publish();
  });
  const std::string pointer = step_name(state.step) + "\n";
  write_file_atomically(checkpoints_dir / "latest", [&](int fd) {
    write_all(fd, pointer.data(), pointer.size(), checkpoints_dir / "latest");
  });
  // Prune: keep the newest `keep` complete checkpoints and drop staging leftovers.
  std::vector<int64_t> steps;
  for (const auto& entry : fs::directory_iterator(checkpoints_dir)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(".step-", 0) == 0) {
      std::error_code ignored;
      fs::remove_all(entry.path(), ignored);
    } else if (int64_t step = step_of(name); step >= 0 && step <= state.step) {
      steps.push_back(step);
    }
  }
  std::sort(steps.rbegin(), steps.rend());
  for (size_t i = size_t(std::max(keep, 1)); i < steps.size(); ++i) {
    std::error_code ignored;
    fs::remove_all(checkpoints_dir / step_name(steps[i]), ignored);
  }
  return target;
}

std::optional<TrainingState> load_latest_training_state(const fs::path& checkpoints_dir) {
  if (!fs::exists(checkpoints_dir / "latest")) return std::nullopt;
  const std::string name = read_latest(checkpoints_dir);
  const fs::path dir = checkpoints_dir / name;
  if (step_of(name) < 0 || !fs::is_directory(dir))
    throw Error((checkpoints_dir / "latest").string() + " names '" + name +
                "', which is not a checkpoint directory");
  const nlohmann::json json = read_json_file(dir / "state.json");
  TrainingState state;
  try {
    state.step = json.at("step").get<int64_t>();
    state.epoch = json.at("epoch").get<int64_t>();
    state.position = json.at("position").get<int64_t>();
    state.epoch_rng_state = json.at("epoch_rng_state").get<std::string>();
    state.options = json.at("options");
    const io::TensorStore store = io::TensorStore::open(dir);
    for (const auto& parameter : json.at("parameter_names")) {
      const std::string tensor_name = parameter.get<std::string>();
      auto read = [&](const char* prefix) {
        const io::TensorInfo& info = store.at(prefix + tensor_name);
        return NamedTensor{tensor_name, info.shape, store.read_f32(prefix + tensor_name)};
      };
      state.parameters.push_back(read(kParameter));
      state.exp_avg.push_back(read(kExpAvg));
      state.exp_avg_sq.push_back(read(kExpAvgSq));
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error((dir / "state.json").string() + ": " + e.what());
  }
  return state;
}

}  // namespace swiftkv::train
