// swiftkv distill: knowledge-preserving distillation of a SwiftKV student (src/train).
// Built only with the trainer (libtorch found at configure time).
#ifdef SWIFTKV_HAVE_TRAINER
#include "train/distill.h"

#include <cstdlib>
#include <iostream>

#include "cli/commands.h"
#include "common/error.h"
#include "train/distributed.h"

namespace swiftkv::cli {

void add_distill_command(CLI::App& app) {
  auto options = std::make_shared<train::DistillOptions>();
  auto nproc = std::make_shared<int>(1);
  auto paths = std::make_shared<std::array<std::string, 4>>();
  CLI::App* command = app.add_subcommand(
      "distill", "Distill a SwiftKV model from its own teacher (KL at T=2 + MSE on the last layer's input)");
  command
      ->add_option("-m,--model", (*paths)[0],
                   "SwiftKV checkpoint with the teacher q/k/v (swiftkv convert's output)")
      ->required();
  command->add_option("--data", (*paths)[1], "plain text (documents split on blank lines) or chat JSONL")
      ->required();
  command
      ->add_option("--out", (*paths)[2], "output directory (the distilled checkpoint; checkpoints/ inside)")
      ->required();
  command->add_option("--eval-data", (*paths)[3], "held-out data for the evaluations");
  command->add_option("--eval-fraction", options->eval_fraction,
                      "hold out this fraction of --data's samples (when no --eval-data)");
  command->add_option("--data-format", options->data_format, "auto, text or chat")->capture_default_str();
  command->add_option("--lr", options->lr, "peak learning rate")->capture_default_str();
  command
      ->add_option("--warmup-fraction", options->warmup_fraction,
                   "linear warm-up over this fraction of the steps")
      ->capture_default_str();
  command->add_option("--weight-decay", options->weight_decay, "decoupled weight decay (AdamW)")
      ->capture_default_str();
  command->add_option("--epochs", options->epochs, "passes over the data")->capture_default_str();
  command->add_option("--max-steps", options->max_steps, "stop after this many steps (overrides --epochs)");
  command->add_option("--batch-size", options->batch_size, "sequences per step, over all processes")
      ->capture_default_str();
  command->add_option("--seq-len", options->seq_len, "tokens per packed sequence")->capture_default_str();
  command->add_option("--kl-weight", options->kl_weight, "weight of the KL term")->capture_default_str();
  command->add_option("--mse-weight", options->mse_weight, "weight of the MSE on the last layer's input")
      ->capture_default_str();
  command
      ->add_option("--ce-weight", options->ce_weight,
                   "weight of the student's cross-entropy on the data's next tokens (not in the reference "
                   "recipe)")
      ->capture_default_str();
  command->add_option("--temperature", options->temperature, "distillation temperature T")
      ->capture_default_str();
  command->add_option("--logits-chunk", options->logits_chunk, "positions per lm_head + KL chunk")
      ->capture_default_str();
  command->add_option("--seed", options->seed, "data order seed")->capture_default_str();
  command->add_option("--threads", options->threads, "threads per process (0: cores / processes)");
  command->add_option("--eval-every", options->eval_every, "evaluate on the held-out data every N steps");
  command->add_option("--save-every", options->save_every, "checkpoint every N steps (OUT/checkpoints)");
  command->add_option("--log-every", options->log_every, "progress line every N steps")
      ->capture_default_str();
  command->add_option("--keep-checkpoints", options->keep_checkpoints, "checkpoints kept")
      ->capture_default_str();
  command->add_flag("--resume", options->resume, "continue from OUT/checkpoints/latest");
  command->add_flag("--recompute-teacher-prefix", options->recompute_teacher_prefix,
                    "the naive recipe: run the teacher's early layers separately (for speed comparisons)");
  command->add_option("--nproc", *nproc, "start N local data-parallel workers (or set RANK, WORLD_SIZE, ...)")
      ->capture_default_str();
  // Crash-safety tests only.
  command->add_option("--kill-after-save", options->stop_after_step)->group("");
  command->add_option("--kill-during-save", options->kill_during_save_step)->group("");
  command->callback([options, nproc, paths] {
    options->model_dir = (*paths)[0];
    options->data = (*paths)[1];
    options->out = (*paths)[2];
    options->eval_data = (*paths)[3];
    if (*nproc > 1 && std::getenv("WORLD_SIZE") == nullptr) {
      const int status = train::launch_local_workers(*nproc);
      if (status != 0)
        throw Error("distillation failed (a worker exited with status " + std::to_string(status) + ")");
      return;
    }
    train::run_distill(*options, std::cout);
  });
}

}  // namespace swiftkv::cli
#endif  // SWIFTKV_HAVE_TRAINER
