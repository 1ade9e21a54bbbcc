#include "train/distributed.h"

#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "common/error.h"

namespace swiftkv::train {

namespace {

std::optional<std::string> env(const char* name) {
  const char* value = std::getenv(name);
  if (!value || !*value) return std::nullopt;
  return std::string(value);
}

int env_int(const char* name, int fallback) {
  const auto value = env(name);
  if (!value) return fallback;
  try {
    size_t used = 0;
    const int parsed = std::stoi(*value, &used);
    if (used == value->size()) return parsed;
  } catch (...) {
  }
  throw Error(std::string("environment variable ") + name + "='" + *value + "' is not an integer");
}

class GlooProcessGroup : public ProcessGroup {
 public:
  explicit GlooProcessGroup(const DistributedConfig& config)
      : rank_(config.rank), world_size_(config.world_size) {
    c10d::TCPStoreOptions store_options;
    store_options.port = uint16_t(config.master_port);
    store_options.isServer = config.rank == 0;
    store_options.numWorkers = size_t(config.world_size);
    store_options.waitWorkers = true;
    store_options.timeout = std::chrono::minutes(5);
    auto store = c10::make_intrusive<c10d::TCPStore>(config.master_addr, store_options);
    auto options = c10d::ProcessGroupGloo::Options::create();
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(config.master_addr));
    options->timeout = std::chrono::minutes(30);  // rank 0 evaluates and saves while the others wait
    group_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store, config.rank, config.world_size, options);
  }
  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  void all_reduce_sum(float* data, int64_t count) override {
    std::vector<at::Tensor> tensors{torch::from_blob(data, {count}, torch::kFloat32)};
    group_->allreduce(tensors)->wait();
  }
  void barrier() override { group_->barrier()->wait(); }

 private:
  int rank_, world_size_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;
};

}  // namespace

DistributedConfig distributed_config_from_env() {
  DistributedConfig config;
  config.world_size = env_int("WORLD_SIZE", 1);
  config.rank = env_int("RANK", 0);
  config.master_addr = env("MASTER_ADDR").value_or("127.0.0.1");
  config.master_port = env_int("MASTER_PORT", 29500);
  if (config.world_size < 1) throw Error("WORLD_SIZE must be at least 1");
  if (config.rank < 0 || config.rank >= config.world_size)
    throw Error("RANK=" + std::to_string(config.rank) +
                " is outside [0, WORLD_SIZE=" + std::to_string(config.world_size) + ")");
  if (config.master_port <= 0 || config.master_port > 65535) throw Error("MASTER_PORT is not a TCP port");
  return config;
}

std::unique_ptr<ProcessGroup> ProcessGroup::create(const DistributedConfig& config) {
  if (config.world_size == 1) return nullptr;
  try {
    return std::make_unique<GlooProcessGroup>(config);
  } catch (const c10::Error& e) {
    throw Error("cannot join the process group (rank " + std::to_string(config.rank) + " of " +
                std::to_string(config.world_size) + ", master " + config.master_addr + ":" +
                std::to_string(config.master_port) + "): " + e.what_without_backtrace());
  }
}

}  // namespace swiftkv::train
