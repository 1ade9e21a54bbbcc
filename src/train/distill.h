#pragma once
// Knowledge-preserving distillation of a SwiftKV student from its own teacher (SWIFTKV.md):
// `swiftkv distill`. Torch-free header; the loop lives in distill.cpp.
#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>

namespace swiftkv::train {

struct DistillOptions {
  std::filesystem::path model_dir;   // a SwiftKV checkpoint with the teacher q/k/v (convert's output)
  std::filesystem::path data;        // plain text or chat JSONL (see data.h)
  std::filesystem::path out;         // the distilled checkpoint; OUT/checkpoints holds training state
  std::filesystem::path eval_data;   // held-out data (optional)
  double eval_fraction = 0.0;        // or: the last fraction of --data's samples, held out
  std::string data_format = "auto";  // auto | text | chat
  // The reference recipe.
  double lr = 2e-4;
  double warmup_fraction = 0.05;
  double weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.999, adam_eps = 1e-8;
  int64_t epochs = 1;
  int64_t max_steps = 0;   // > 0: stop after this many steps (overrides --epochs)
  int64_t batch_size = 8;  // sequences per optimizer step, over all processes
  int64_t seq_len = 256;
  double kl_weight = 1.0, mse_weight = 1.0, temperature = 2.0;
  // Not in the reference recipe (0 there): cross-entropy of the student against the data's
  // next tokens (masked like the KL, divided by all positions), added to the loss.
  double ce_weight = 0.0;
  int64_t logits_chunk = 512;  // positions per lm_head + KL chunk
  uint64_t seed = 0;
  int threads = 0;  // per process; 0: the machine's cores / processes
  int64_t eval_every = 0, save_every = 0, log_every = 1;
  int keep_checkpoints = 2;
  bool resume = false;
  // The naive recipe (for measurements): run the teacher's layers [0, M) separately instead of
  // sharing h_M with the student.
  bool recompute_teacher_prefix = false;
  // Tests of crash safety: SIGKILL this process right after saving the checkpoint of step k,
  // or in the middle of saving it (files written, not yet renamed into place); 0: never.
  int64_t stop_after_step = 0;
  int64_t kill_during_save_step = 0;
};

nlohmann::json distill_options_to_json(const DistillOptions& options);

struct DistillResult {
  int64_t steps = 0;
  double first_loss = 0.0, last_loss = 0.0;
  double tokens_per_second = 0.0;
  // Held-out evaluations (when there is held-out data): before the first step of this run and
  // after the last one. loss = kl + mse as in training; nll = the student's next-token NLL.
  struct Eval {
    bool done = false;
    double kl = 0.0, mse = 0.0, nll = 0.0, agreement = 0.0;
  } initial_eval, final_eval;
};

// Runs the distillation (as one rank when RANK / WORLD_SIZE are set), printing progress to
// `log` on rank 0. Writes options.out (rank 0). Throws swiftkv::Error on bad input.
DistillResult run_distill(const DistillOptions& options, std::ostream& log);

}  // namespace swiftkv::train
