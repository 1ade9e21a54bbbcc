// The distillation loop: loss (SWIFTKV.md), hand-written Adam(W) (so its state is plain
// tensors we save and restore bit-exactly), data order, evaluation, checkpoints, output.
#include "train/distill.h"

#include <malloc.h>
#include <signal.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "common/error.h"
#include "common/files.h"
#include "io/safetensors.h"
#include "tokenizer/tokenizer.h"
#include "train/data.h"
#include "train/distributed.h"
#include "train/torch_model.h"
#include "train/training_state.h"

namespace swiftkv::train {

namespace fs = std::filesystem;

nlohmann::json distill_options_to_json(const DistillOptions& o) {
  return {{"model", o.model_dir.string()},
          {"data", o.data.string()},
          {"out", o.out.string()},
          {"eval_data", o.eval_data.string()},
          {"eval_fraction", o.eval_fraction},
          {"data_format", o.data_format},
          {"lr", o.lr},
          {"warmup_fraction", o.warmup_fraction},
          {"weight_decay", o.weight_decay},
          {"beta1", o.beta1},
          {"beta2", o.beta2},
          {"adam_eps", o.adam_eps},
          {"epochs", o.epochs},
          {"max_steps", o.max_steps},
          {"batch_size", o.batch_size},
          {"seq_len", o.seq_len},
          {"kl_weight", o.kl_weight},
          {"mse_weight", o.mse_weight},
          {"ce_weight", o.ce_weight},
          {"temperature", o.temperature},
          {"logits_chunk", o.logits_chunk},
          {"seed", o.seed},
          {"threads", o.threads},
          {"eval_every", o.eval_every},
          {"save_every", o.save_every},
          {"recompute_teacher_prefix", o.recompute_teacher_prefix}};
}

namespace {

using Clock = std::chrono::steady_clock;

// What one batch gives (sums over this process's shard; averaged by the caller).
struct BatchLosses {
  double kl = 0.0;   // kl_weight * T^2 * sum(kl_t * mask_t) / positions
  double mse = 0.0;  // mse_weight * mean((h_student - h_teacher)^2) over positions x hidden
  double ce = 0.0;   // ce_weight * sum(student NLL of the next token * mask_t) / positions
  double nll_sum = 0.0;
  int64_t nll_count = 0, agree = 0, positions = 0;
};

// Runs teacher and student on one batch. train: accumulates gradients of (kl + mse + ce) into the
// trainable tensors. The teacher's and the student's later layers start from ONE h_M (unless
// the naive recipe is asked for); lm_head + KL run in chunks of positions, each chunk's graph
// freed by backpropagating it into the final hidden state at once.
BatchLosses run_batch(const TorchModel& model, const torch::Tensor& tokens, const torch::Tensor& token_mask,
                      const DistillOptions& options, bool train, bool measure) {
  std::optional<torch::NoGradGuard> no_grad;
  if (!train) no_grad.emplace();
  const int64_t B = tokens.size(0), T = tokens.size(1), N = B * T, H = model.config().hidden_size;
  const torch::Tensor h_m = model.prefix(tokens);
  TorchModel::LaterOutput teacher;
  {
    torch::NoGradGuard teacher_no_grad;
    teacher = model.later_layers(options.recompute_teacher_prefix ? model.prefix(tokens) : h_m, false);
  }
  const TorchModel::LaterOutput student = model.later_layers(h_m, true);

  // mask_t: the position predicts token t+1; it counts when that token does (the last
  // position of a sequence: when its own token does). Plain text: 1 everywhere.
  const torch::Tensor logits_mask =
      torch::cat({token_mask.slice(1, 1), token_mask.slice(1, T - 1)}, 1).reshape({N});
  const torch::Tensor targets = torch::cat({tokens.slice(1, 1), tokens.slice(1, T - 1)}, 1).reshape({N});
  const torch::Tensor target_valid =
      torch::cat({token_mask.slice(1, 1), torch::zeros({B, 1}, token_mask.options())}, 1).reshape({N});

  const torch::Tensor teacher_final = teacher.final_hidden.reshape({N, H});
  const torch::Tensor student_final = student.final_hidden.reshape({N, H});
  torch::Tensor student_leaf = student_final.detach();
  if (train) student_leaf.set_requires_grad(true);
  const double temperature = options.temperature;
  const double kl_scale = options.kl_weight * temperature * temperature / double(N);
  BatchLosses losses;
  losses.positions = N;
  const int64_t chunk = std::max<int64_t>(options.logits_chunk, 1);
  for (int64_t begin = 0; begin < N; begin += chunk) {
    const int64_t end = std::min(N, begin + chunk);
    torch::Tensor teacher_logits, teacher_log_probs;
    {
      torch::NoGradGuard chunk_no_grad;
      teacher_logits = model.lm_head(teacher_final.slice(0, begin, end));
      teacher_log_probs = torch::log_softmax(teacher_logits / temperature, -1);
    }
    const torch::Tensor student_logits = model.lm_head(student_leaf.slice(0, begin, end));
    const torch::Tensor student_log_probs = torch::log_softmax(student_logits / temperature, -1);
    // KL(softmax(t/T) || softmax(s/T)) per position.
    const torch::Tensor kl = (teacher_log_probs.exp() * (teacher_log_probs - student_log_probs)).sum(-1);
    const torch::Tensor kl_loss = (kl * logits_mask.slice(0, begin, end)).sum() * kl_scale;
    const torch::Tensor valid = target_valid.slice(0, begin, end);
    // The student's NLL of each position's next token: for the CE term and the measurements.
    torch::Tensor nll;
    if (options.ce_weight != 0.0 || measure)
      nll = -torch::log_softmax(student_logits, -1)
                 .gather(1, targets.slice(0, begin, end).unsqueeze(1))
                 .squeeze(1);
    torch::Tensor ce_loss;
    if (options.ce_weight != 0.0) ce_loss = (nll * valid).sum() * (options.ce_weight / double(N));
    if (train) (ce_loss.defined() ? kl_loss + ce_loss : kl_loss).backward();
    losses.kl += kl_loss.item<double>();
    if (ce_loss.defined()) losses.ce += ce_loss.item<double>();
    if (measure) {
      torch::NoGradGuard measure_no_grad;
      losses.nll_sum += (nll.detach() * valid).sum().item<double>();
      losses.nll_count += int64_t(valid.sum().item<double>());
      losses.agree += (student_logits.argmax(-1) == teacher_logits.argmax(-1)).sum().item<int64_t>();
    }
  }
  torch::Tensor mse;
  if (student.last_layer_input.defined()) {
    mse = torch::mse_loss(student.last_layer_input, teacher.last_layer_input) * options.mse_weight;
    losses.mse = mse.item<double>();
  }
  if (train) {
    std::vector<torch::Tensor> roots{student_final}, grads{student_leaf.grad()};
    if (mse.defined() && mse.requires_grad()) {
      roots.push_back(mse);
      grads.push_back(torch::ones_like(mse));
    }
    torch::autograd::backward(roots, grads);
  }
  return losses;
}

// Adam with decoupled weight decay (torch.optim.AdamW; with weight decay 0 exactly Adam).
struct Adam {
  std::vector<torch::Tensor> exp_avg, exp_avg_sq;
  void init(const std::vector<TrainableTensor>& parameters) {
    for (const auto& p : parameters) {
      exp_avg.push_back(torch::zeros_like(p.value, torch::MemoryFormat::Contiguous).set_requires_grad(false));
      exp_avg_sq.push_back(
          torch::zeros_like(p.value, torch::MemoryFormat::Contiguous).set_requires_grad(false));
    }
  }
  void step(std::vector<TrainableTensor>& parameters, int64_t step_number, double lr,
            const DistillOptions& o) {
    torch::NoGradGuard no_grad;
    const double bias_correction1 = 1.0 - std::pow(o.beta1, double(step_number));
    const double bias_correction2 = 1.0 - std::pow(o.beta2, double(step_number));
    for (size_t i = 0; i < parameters.size(); ++i) {
      torch::Tensor p = parameters[i].value;
      const torch::Tensor grad = p.grad();
      if (!grad.defined()) continue;
      if (o.weight_decay != 0.0) p.mul_(1.0 - lr * o.weight_decay);
      exp_avg[i].mul_(o.beta1).add_(grad, 1.0 - o.beta1);
      exp_avg_sq[i].mul_(o.beta2).addcmul_(grad, grad, 1.0 - o.beta2);
      const torch::Tensor denominator = (exp_avg_sq[i].sqrt() / std::sqrt(bias_correction2)).add_(o.adam_eps);
      p.addcdiv_(exp_avg[i], denominator, -lr / bias_correction1);
    }
  }
};

// transformers' get_linear_schedule_with_warmup, as the reference recipe uses it.
double learning_rate(const DistillOptions& o, int64_t step, int64_t total_steps) {
  const int64_t warmup = int64_t(std::ceil(o.warmup_fraction * double(total_steps)));
  if (step < warmup) return o.lr * double(step) / double(std::max<int64_t>(warmup, 1));
  return o.lr *
         std::max(0.0, double(total_steps - step) / double(std::max<int64_t>(total_steps - warmup, 1)));
}

std::string format_duration(double seconds) {
  const int64_t s = int64_t(std::max(0.0, seconds) + 0.5);
  std::ostringstream out;
  if (s >= 3600)
    out << s / 3600 << "h" << std::setw(2) << std::setfill('0') << (s % 3600) / 60 << "m";
  else if (s >= 60)
    out << s / 60 << "m" << std::setw(2) << std::setfill('0') << s % 60 << "s";
  else
    out << s << "s";
  return out.str();
}

std::vector<int64_t> draw_order(int64_t count, std::mt19937_64& rng) {
  std::vector<int64_t> order(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) order[size_t(i)] = i;
  for (int64_t i = count - 1; i > 0; --i) std::swap(order[size_t(i)], order[size_t(rng() % uint64_t(i + 1))]);
  return order;
}

std::string rng_state(const std::mt19937_64& rng) {
  std::ostringstream out;
  out << rng;
  return out.str();
}

// Rows `indices` of the packed data as (tokens int64 (b, T), mask float (b, T)).
std::pair<torch::Tensor, torch::Tensor> gather_batch(const PackedData& data,
                                                     const std::vector<int64_t>& indices) {
  const int64_t T = data.seq_len, b = int64_t(indices.size());
  torch::Tensor tokens = torch::empty({b, T}, torch::kInt64);
  torch::Tensor mask = torch::empty({b, T}, torch::kFloat32);
  int64_t* token_out = tokens.data_ptr<int64_t>();
  float* mask_out = mask.data_ptr<float>();
  for (int64_t r = 0; r < b; ++r) {
    const size_t offset = size_t(indices[size_t(r)] * T);
    for (int64_t t = 0; t < T; ++t) {
      token_out[r * T + t] = data.tokens[offset + size_t(t)];
      mask_out[r * T + t] = data.mask[offset + size_t(t)];
    }
  }
  return {tokens, mask};
}

struct EvalResult {
  double kl = 0.0, mse = 0.0, nll = 0.0, agreement = 0.0;
};

EvalResult evaluate(const TorchModel& model, const PackedData& data, const DistillOptions& options) {
  EvalResult result;
  const int64_t sequences = data.num_sequences(), batch = std::max<int64_t>(options.batch_size, 1);
  double nll_sum = 0.0;
  int64_t nll_count = 0, agree = 0, positions = 0;
  for (int64_t begin = 0; begin < sequences; begin += batch) {
    std::vector<int64_t> indices;
    for (int64_t i = begin; i < std::min(sequences, begin + batch); ++i) indices.push_back(i);
    auto [tokens, mask] = gather_batch(data, indices);
    const BatchLosses losses = run_batch(model, tokens, mask, options, /*train=*/false, /*measure=*/true);
    result.kl += losses.kl * double(losses.positions);
    result.mse += losses.mse * double(losses.positions);
    nll_sum += losses.nll_sum;
    nll_count += losses.nll_count;
    agree += losses.agree;
    positions += losses.positions;
  }
  result.kl /= double(std::max<int64_t>(positions, 1));
  result.mse /= double(std::max<int64_t>(positions, 1));
  result.nll = nll_sum / double(std::max<int64_t>(nll_count, 1));
  result.agreement = double(agree) / double(std::max<int64_t>(positions, 1));
  return result;
}

void print_eval(std::ostream& log, int64_t step, const EvalResult& eval) {
  log << "eval step " << step << "  kl " << std::fixed << std::setprecision(5) << eval.kl << "  mse "
      << eval.mse << "  student nll " << eval.nll << " (ppl " << std::setprecision(3) << std::exp(eval.nll)
      << ")  top-1 agreement " << std::setprecision(4) << eval.agreement << std::endl;
  log.unsetf(std::ios::floatfield);
}

// Keys that must match for --resume to continue the same run.
const char* kResumeKeys[] = {"model",       "data",      "seq_len",    "batch_size",      "seed",
                             "epochs",      "max_steps", "lr",         "warmup_fraction", "weight_decay",
                             "temperature", "kl_weight", "mse_weight", "ce_weight",       "data_format",
                             "eval_fraction"};

void copy_file_atomically(const fs::path& from, const fs::path& to) {
  std::ifstream in(from, std::ios::binary);
  if (!in) throw Error("cannot read " + from.string());
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  write_file_atomically(to, [&](int fd) { write_all(fd, bytes.data(), bytes.size(), to); });
}

// OUT: every tensor of the input checkpoint, the frozen ones byte for byte, the trainable ones
// in the dtype they had; config.json, tokenizer and other side files copied.
void write_distilled_model(const TorchModel& model, const fs::path& out) {
  const fs::path& input = model.directory();
  const io::TensorStore store = io::TensorStore::open(input);
  std::map<std::string, const TrainableTensor*> trainable;
  for (const TrainableTensor& tensor : model.trainable()) trainable[tensor.name] = &tensor;
  std::vector<io::TensorSpec> specs;
  for (const std::string& name : store.names()) {
    const io::TensorInfo& info = store.at(name);
    specs.push_back({name, info.dtype, info.shape});
  }
  fs::create_directories(out);
  std::map<std::string, std::string> metadata = store.metadata();
  metadata.emplace("format", "pt");
  io::write_safetensors_streaming(
      out / "model.safetensors", specs,
      [&](size_t index, const io::EmitBytes& emit) {
        const io::TensorInfo& info = store.at(specs[index].name);
        auto it = trainable.find(info.name);
        if (it == trainable.end()) {
          emit(info.data, info.nbytes);
          return;
        }
        const torch::ScalarType type = info.dtype == io::DType::BF16  ? torch::kBFloat16
                                       : info.dtype == io::DType::F16 ? torch::kHalf
                                                                      : torch::kFloat32;
        const torch::Tensor stored = it->second->value.detach().to(type).contiguous();
        emit(stored.data_ptr(), size_t(stored.numel()) * stored.element_size());
      },
      metadata);
  for (const auto& entry : fs::directory_iterator(input)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file() || entry.path().extension() == ".safetensors" ||
        name == "model.safetensors.index.json")
      continue;
    copy_file_atomically(entry.path(), out / name);
  }
}

// glibc serves a block over its mmap threshold (128 KiB at start, raised only when such a block
// is freed) with fresh pages from mmap and unmaps them on free, so every step page-faulted its
// megabyte-sized logits and gradient tensors in again: a third of the speed on stories260K, and
// which of the two recipes won depended on allocation order. Freed blocks now stay in the heap.
void keep_freed_memory_for_reuse() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's maximum on 64-bit
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

}  // namespace

DistillResult run_distill(const DistillOptions& options, std::ostream& log_stream) {
  keep_freed_memory_for_reuse();
  const DistributedConfig distributed = distributed_config_from_env();
  const bool rank0 = distributed.rank == 0;
  std::ostream null_stream(nullptr);
  std::ostream& log = rank0 ? log_stream : null_stream;
  const int world = distributed.world_size;
  if (options.batch_size < 1 || options.batch_size % world != 0)
    throw Error("--batch-size " + std::to_string(options.batch_size) +
                " must be a positive multiple of the " + std::to_string(world) + " processes");
  if (options.temperature <= 0) throw Error("--temperature must be positive");
  const fs::path checkpoints_dir = options.out / "checkpoints";
  if (fs::exists(options.out / "model.safetensors"))
    throw Error(options.out.string() + " already holds a distilled model; choose another --out");
  if (!options.resume && fs::exists(checkpoints_dir / "latest"))
    throw Error(options.out.string() +
                " holds checkpoints of an earlier run: pass --resume to continue it, or "
                "choose another --out");

  const int threads =
      options.threads > 0 ? options.threads : std::max(1, int(std::thread::hardware_concurrency()) / world);
  torch::set_num_threads(threads);
  torch::manual_seed(options.seed);

  // Data.
  const tokenizer::Tokenizer tokenizer = tokenizer::Tokenizer::from_dir(options.model_dir);
  const DataFormat format = options.data_format == "text"   ? DataFormat::Text
                            : options.data_format == "chat" ? DataFormat::Chat
                            : options.data_format == "auto"
                                ? DataFormat::Auto
                                : throw Error("--data-format must be auto, text or chat");
  DataStats stats, eval_stats;
  std::vector<Sample> samples = load_samples(options.data, tokenizer, format, stats);
  std::vector<Sample> held_out;
  if (!options.eval_data.empty())
    held_out = load_samples(options.eval_data, tokenizer, format, eval_stats);
  else
    held_out = split_held_out(samples, options.eval_fraction);
  const PackedData train_data = pack_samples(samples, options.seq_len, stats, options.data.string());
  std::optional<PackedData> eval_data;
  if (!held_out.empty()) eval_data = pack_samples(held_out, options.seq_len, eval_stats, "the held-out data");
  log << "data: " << stats.summary() << "; " << train_data.num_sequences() << " sequences of "
      << options.seq_len << " tokens";
  if (eval_data) log << "; held out: " << eval_data->num_sequences() << " sequences";
  log << std::endl;

  const int64_t steps_per_epoch = train_data.num_sequences() / options.batch_size;
  if (steps_per_epoch == 0)
    throw Error(options.data.string() + " gives " + std::to_string(train_data.num_sequences()) +
                " sequences, fewer than one batch of --batch-size " + std::to_string(options.batch_size));
  const int64_t total_steps = options.max_steps > 0 ? options.max_steps : options.epochs * steps_per_epoch;

  // Model.
  TorchModel model(options.model_dir);
  if (!model.config().swiftkv())
    throw Error(options.model_dir.string() +
                " is not a SwiftKV model (num_key_value_layers == num_hidden_layers); "
                "run swiftkv convert first");
  if (!model.has_teacher())
    throw Error(options.model_dir.string() +
                " has no teacher q/k/v for the later layers (converted with "
                "--drop-teacher?); distillation needs them");
  std::vector<TrainableTensor>& parameters = model.trainable();
  Adam adam;
  adam.init(parameters);
  int64_t parameter_count = 0;
  for (const auto& p : parameters) parameter_count += p.value.numel();
  log << "model: " << model.config().num_hidden_layers
      << " layers, SwiftKV M=" << model.config().num_key_value_layers
      << " G=" << model.config().key_value_group_size << "; trainable: " << parameters.size() << " tensors, "
      << parameter_count << " values; " << world << " process(es) x " << threads << " threads" << std::endl;

  // State (fresh or resumed).
  std::mt19937_64 rng(options.seed);
  TrainingState state;
  state.options = distill_options_to_json(options);
  state.epoch_rng_state = rng_state(rng);
  if (options.resume) {
    if (auto loaded = load_latest_training_state(checkpoints_dir)) {
      for (const char* key : kResumeKeys) {
        if (loaded->options.value(key, nlohmann::json()) != state.options[key])
          throw Error("--resume: --" + std::string(key) + " was " +
                      loaded->options.value(key, nlohmann::json()).dump() + " in the checkpointed run, now " +
                      state.options[key].dump());
      }
      if (loaded->parameters.size() != parameters.size())
        throw Error("--resume: the checkpoint's tensors differ");
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < parameters.size(); ++i) {
        if (loaded->parameters[i].name != parameters[i].name ||
            loaded->parameters[i].shape != parameters[i].value.sizes().vec())
          throw Error("--resume: checkpoint tensor " + loaded->parameters[i].name +
                      " does not match the model");
        auto copy_in = [&](torch::Tensor& target, NamedTensor& source) {
          target.copy_(torch::from_blob(source.values.data(), source.shape, torch::kFloat32));
        };
        copy_in(parameters[i].value, loaded->parameters[i]);
        copy_in(adam.exp_avg[i], loaded->exp_avg[i]);
        copy_in(adam.exp_avg_sq[i], loaded->exp_avg_sq[i]);
      }
      state.step = loaded->step;
      state.epoch = loaded->epoch;
      state.position = loaded->position;
      state.epoch_rng_state = loaded->epoch_rng_state;
      std::istringstream(state.epoch_rng_state) >> rng;
      log << "resumed from " << (checkpoints_dir / ("step-" + std::to_string(state.step))).string()
          << " (step " << state.step << ", epoch " << state.epoch << ", sequence " << state.position << ")"
          << std::endl;
    } else {
      log << "--resume: no checkpoint in " << checkpoints_dir.string() << ", starting afresh" << std::endl;
    }
  }
  std::vector<int64_t> order = draw_order(train_data.num_sequences(), rng);

  std::unique_ptr<ProcessGroup> group = ProcessGroup::create(distributed);
  const int64_t local_batch = options.batch_size / world;
  const int64_t tokens_per_step = options.batch_size * options.seq_len;

  DistillResult result;
  auto save = [&](int64_t kill_during_save_step) {
    TrainingState snapshot = state;
    for (size_t i = 0; i < parameters.size(); ++i) {
      auto to_named = [&](const torch::Tensor& tensor) {
        const torch::Tensor values = tensor.detach().contiguous();
        return NamedTensor{
            parameters[i].name, values.sizes().vec(),
            std::vector<float>(values.data_ptr<float>(), values.data_ptr<float>() + values.numel())};
      };
      snapshot.parameters.push_back(to_named(parameters[i].value));
      snapshot.exp_avg.push_back(to_named(adam.exp_avg[i]));
      snapshot.exp_avg_sq.push_back(to_named(adam.exp_avg_sq[i]));
    }
    std::function<void()> before_publish;
    if (kill_during_save_step == state.step) before_publish = [] { ::raise(SIGKILL); };
    const fs::path saved =
        save_training_state(checkpoints_dir, snapshot, options.keep_checkpoints, before_publish);
    log << "saved " << saved.string() << std::endl;
  };

  auto record = [](DistillResult::Eval& target, const EvalResult& eval) {
    target = {true, eval.kl, eval.mse, eval.nll, eval.agreement};
  };
  if (eval_data && rank0) {
    const EvalResult eval = evaluate(model, *eval_data, options);
    record(result.initial_eval, eval);
    print_eval(log, state.step, eval);
  }
  double busy_seconds = 0.0;
  int64_t timed_steps = 0;
  const int64_t kill_after_save = options.stop_after_step;
  while (state.step < total_steps) {
    const Clock::time_point start = Clock::now();
    if (state.position + options.batch_size > train_data.num_sequences()) {
      ++state.epoch;
      state.position = 0;
      state.epoch_rng_state = rng_state(rng);
      order = draw_order(train_data.num_sequences(), rng);
    }
    std::vector<int64_t> indices;
    for (int64_t i = 0; i < local_batch; ++i)
      indices.push_back(order[size_t(state.position + distributed.rank * local_batch + i)]);
    auto [tokens, mask] = gather_batch(train_data, indices);
    for (auto& p : parameters) p.value.mutable_grad() = torch::Tensor();
    const BatchLosses losses = run_batch(model, tokens, mask, options, /*train=*/true, /*measure=*/false);
    double kl = losses.kl, mse = losses.mse, ce = losses.ce;
    if (group) {
      // One all-reduce per step: every gradient plus the three loss values, then the average.
      std::vector<torch::Tensor> pieces;
      for (auto& p : parameters)
        pieces.push_back(p.value.grad().defined() ? p.value.grad().reshape({-1})
                                                  : torch::zeros({p.value.numel()}));
      pieces.push_back(torch::tensor({kl, mse, ce}, torch::kFloat32));
      torch::Tensor flat = torch::cat(pieces).contiguous();
      group->all_reduce_sum(flat.data_ptr<float>(), flat.numel());
      flat.div_(double(world));
      int64_t offset = 0;
      torch::NoGradGuard no_grad;
      for (auto& p : parameters) {
        const int64_t n = p.value.numel();
        if (p.value.grad().defined())
          p.value.mutable_grad().copy_(flat.slice(0, offset, offset + n).view_as(p.value));
        offset += n;
      }
      kl = flat[offset].item<double>();
      mse = flat[offset + 1].item<double>();
      ce = flat[offset + 2].item<double>();
    }
    const double lr = learning_rate(options, state.step, total_steps);
    ++state.step;
    adam.step(parameters, state.step, lr, options);
    state.position += options.batch_size;
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    busy_seconds += seconds;
    ++timed_steps;
    const double loss = kl + mse + ce;
    if (result.steps == 0) result.first_loss = loss;
    result.last_loss = loss;
    ++result.steps;
    const double step_seconds = busy_seconds / double(timed_steps);
    if (options.log_every > 0 && (state.step % options.log_every == 0 || state.step == total_steps)) {
      log << "step " << state.step << "/" << total_steps << "  loss " << std::fixed << std::setprecision(5)
          << loss << " (kl " << kl << " mse " << mse;
      if (options.ce_weight != 0.0) log << " ce " << ce;
      log << ")  lr " << std::scientific << std::setprecision(3)
          << lr << std::defaultfloat << "  " << int64_t(double(tokens_per_step) / step_seconds)
          << " tok/s  eta " << format_duration(step_seconds * double(total_steps - state.step)) << std::endl;
    }
    if (eval_data && options.eval_every > 0 && rank0 && state.step % options.eval_every == 0) {
      const EvalResult eval = evaluate(model, *eval_data, options);
      record(result.final_eval, eval);
      print_eval(log, state.step, eval);
    }
    if (options.save_every > 0 && state.step % options.save_every == 0 && rank0) {
      save(options.kill_during_save_step);
      if (kill_after_save == state.step) ::raise(SIGKILL);  // tests: a kill right after step k
    }
  }
  result.tokens_per_second =
      timed_steps > 0 ? double(tokens_per_step) * double(timed_steps) / busy_seconds : 0.0;
  if (rank0) {
    if (eval_data && (options.eval_every <= 0 || state.step % options.eval_every != 0)) {
      const EvalResult eval = evaluate(model, *eval_data, options);
      record(result.final_eval, eval);
      print_eval(log, state.step, eval);
    }
    write_distilled_model(model, options.out);
    log << "wrote " << options.out.string() << " (" << result.steps << " steps, "
        << int64_t(result.tokens_per_second) << " tok/s)" << std::endl;
  }
  if (group) group->barrier();
  return result;
}

}  // namespace swiftkv::train
