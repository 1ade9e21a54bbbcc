#pragma once
// Random-weight models of real shapes (`swiftkv random-model`), for speed work and tests: a
// complete Hugging Face directory (config.json, generation_config.json, model.safetensors,
// a byte-level tokenizer.json, tokenizer_config.json) that every command can load.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "io/model_config.h"
#include "io/safetensors.h"

namespace swiftkv::io {

// "llama-3.2-1b", "llama-3.1-8b", "tinyllama-1.1b", "qwen2.5-0.5b", and for tests "tiny"
// (llama, L=6, untied), "tiny-qwen2" (biases, tied), "tiny-llama3" (llama3 RoPE scaling, tied,
// one KV head).
std::vector<std::string> random_model_presets();

// The preset's config with SwiftKV set: M = num_key_value_layers (nullopt or 0: L, a plain
// model), G = key_value_group_size. Throws swiftkv::Error for an unknown preset or an
// inconsistent M / G (same checks as config.json).
ModelConfig random_model_config(const std::string& preset,
                                std::optional<int64_t> num_key_value_layers = std::nullopt,
                                int64_t key_value_group_size = 1);

// Writes out_dir (which must not exist or be empty) atomically. Base weights ~ N(0, 0.02^2)
// (norm weights 1), deterministic from `seed` and each tensor's name. With M < L the SwiftKV
// tensors are initialised from them as in SWIFTKV.md (swiftkv_init_plan) and the teacher
// q/k/v of layers >= M are kept, so the checkpoint also runs with SwiftKV off. Streams tensor
// by tensor: memory stays at one tensor, whatever the model size. dtype: BF16 or F32.
void write_random_model(const std::string& preset, std::optional<int64_t> num_key_value_layers,
                        int64_t key_value_group_size, const std::filesystem::path& out_dir, uint64_t seed = 0,
                        DType dtype = DType::BF16);

}  // namespace swiftkv::io
