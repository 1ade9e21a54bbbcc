#pragma once
// `swiftkv convert`: a base Hugging Face checkpoint (llama, qwen2) -> a SwiftKV checkpoint
// initialised as SWIFTKV.md, "Transformation" says (swiftkv_init_plan), in the layout of
// Snowflake's published checkpoints. Streams tensor by tensor, so converting a model needs
// memory for one tensor (as float32), not for the model.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "io/model_config.h"

namespace swiftkv::io {

struct ConvertOptions {
  // Exactly one of the two: M itself, or the fraction F of layers whose prompt-token work
  // is skipped (see swiftkv_layers_for_skip_fraction).
  std::optional<int64_t> swiftkv_layers;
  std::optional<double> skip_fraction;
  int64_t group_size = 1;  // G (AcrossKV)
  // Leave out the teacher q/k/v (+bias) of layers >= M: a smaller checkpoint that runs
  // SwiftKV only (no --swiftkv off, no distillation).
  bool drop_teacher = false;
  // Output shards of at most this many bytes of tensor data (one tensor larger than that gets
  // a shard of its own); a model that fits is one model.safetensors. 5 GB as Hugging Face's
  // save_pretrained.
  uint64_t max_shard_bytes = 5'000'000'000;
};

// M for a skip fraction: the number of skipped layers L - M is F * L rounded to the nearest
// multiple of G, ties going to fewer skipped layers (the conservative side: 0.5 of 5 layers
// skips 2, M = 3). Throws swiftkv::Error when F is not in (0, 1) or the result is not a
// SwiftKV model (nothing skipped, or no layer left before the skipped ones).
int64_t swiftkv_layers_for_skip_fraction(int64_t num_hidden_layers, double skip_fraction, int64_t group_size);

struct ConvertResult {
  ModelConfig config;                      // the written config (SwiftKV on)
  int64_t copied_tensors = 0;              // base tensors copied bit for bit
  int64_t new_tensors = 0;                 // norm_swiftkv and the *_swiftkv projections
  int64_t dropped_tensors = 0;             // teacher q/k/v left out (--drop-teacher)
  uint64_t tensor_bytes = 0;               // tensor data written
  int64_t shards = 0;                      // safetensors files written
  std::vector<std::string> copied_files;   // tokenizer.json, generation_config.json, ...
  std::vector<std::string> skipped_files;  // other weight formats, subdirectories, hidden files
};

// Reads the base checkpoint in base_dir (config.json, model.safetensors or a sharded
// model.safetensors.index.json) and writes out_dir atomically (write_model_directory: out_dir
// must not exist or be empty). config.json is the base's with model_type / architectures /
// swiftkv / num_key_value_layers / key_value_group_size set as in Snowflake's checkpoints;
// every base tensor keeps its bytes and dtype; each new tensor takes its source's dtype.
// Small non-weight files (tokenizer.json, tokenizer_config.json, generation_config.json,
// ...) are copied. A checkpoint that is already SwiftKV is refused: re-initialising its
// *_swiftkv tensors would throw away what distillation learnt, and converting its teacher is
// converting the base model, which the user should do from the base itself.
ConvertResult convert_to_swiftkv(const std::filesystem::path& base_dir, const std::filesystem::path& out_dir,
                                 const ConvertOptions& options);

}  // namespace swiftkv::io
