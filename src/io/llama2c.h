#pragma once
// Import of llama2.c checkpoints (e.g. stories260K.bin + tok512.bin) into a Hugging Face
// model directory: config.json, generation_config.json, model.safetensors (f32, wq/wk rows
// permuted to the HF rotate-half layout), tokenizer.json (Llama-2 form), tokenizer_config.json.
#include <filesystem>

namespace swiftkv::io {

void import_llama2c(const std::filesystem::path& model_bin, const std::filesystem::path& tokenizer_bin,
                    const std::filesystem::path& out_dir);

}  // namespace swiftkv::io
