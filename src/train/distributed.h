#pragma once
// Data-parallel distillation over several processes, configured like torchrun: RANK,
// WORLD_SIZE, MASTER_ADDR, MASTER_PORT in the environment. Collectives run over libtorch's
// c10d ProcessGroupGloo (TCP; Debian's libtorch is built with USE_DISTRIBUTED and Gloo).
// The header stays torch-free: tensors cross it as float buffers.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace swiftkv::train {

struct DistributedConfig {
  int rank = 0, world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
};
// Reads RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT (all absent: a single process).
// Throws swiftkv::Error for inconsistent values.
DistributedConfig distributed_config_from_env();

class ProcessGroup {
 public:
  static std::unique_ptr<ProcessGroup> create(
      const DistributedConfig& config);  // nullptr when world_size == 1
  virtual ~ProcessGroup() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // In place: data <- the element-wise sum over all ranks (then the caller divides).
  virtual void all_reduce_sum(float* data, int64_t count) = 0;
  virtual void barrier() = 0;
};

// `swiftkv distill --nproc N`: re-runs this program's command line N times with RANK,
// WORLD_SIZE, MASTER_ADDR=127.0.0.1 and a free MASTER_PORT set, waits for all of them and
// returns the first non-zero exit status (the others are then stopped). No libtorch here.
int launch_local_workers(int nproc);

}  // namespace swiftkv::train
