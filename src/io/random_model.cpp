#include "io/random_model.h"

#include <cmath>
#include <cstring>
#include <functional>

#include "common/bf16.h"
#include "common/error.h"
#include "common/files.h"
#include "io/checkpoint.h"
#include "io/model_dir.h"
#include "io/swiftkv_transform.h"

namespace swiftkv::io {
namespace {

using nlohmann::json;

struct Preset {
  std::string name;
  ModelConfig config;
  std::string bos_token, eos_token;  // special tokens at config.bos_token_id / eos_token_ids[0]
};

ModelConfig make_config(const std::string& model_type, int64_t layers, int64_t hidden, int64_t heads,
                        int64_t kv_heads, int64_t head_dim, int64_t ffn, int64_t vocab, double theta,
                        bool tied, int64_t max_positions, double eps, int bos, int eos) {
  ModelConfig c;
  c.model_type = model_type;
  c.num_hidden_layers = c.num_key_value_layers = layers;
  c.hidden_size = hidden;
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv_heads;
  c.head_dim = head_dim;
  c.intermediate_size = ffn;
  c.vocab_size = vocab;
  c.rope_theta = theta;
  c.tie_word_embeddings = tied;
  c.attention_bias = model_type == "qwen2";
  c.max_position_embeddings = max_positions;
  c.rms_norm_eps = eps;
  c.bos_token_id = bos;
  c.eos_token_ids = {eos};
  return c;
}

RopeScaling llama3_scaling(double factor, int64_t original_max_positions) {
  return {"llama3", factor, 1.0, 4.0, original_max_positions};
}

// Shapes and RoPE of the published models; bos/eos ids are the real ones where they do not
// collide with the byte tokens 0..255 of the random tokenizer.
std::vector<Preset> presets() {
  std::vector<Preset> list;
  ModelConfig c =
      make_config("llama", 16, 2048, 32, 8, 64, 8192, 128256, 500000.0, true, 131072, 1e-5, 128000, 128001);
  c.rope_scaling = llama3_scaling(32.0, 8192);
  list.push_back({"llama-3.2-1b", c, "<|begin_of_text|>", "<|end_of_text|>"});
  c = make_config("llama", 32, 4096, 32, 8, 128, 14336, 128256, 500000.0, false, 131072, 1e-5, 128000,
                  128001);
  c.rope_scaling = llama3_scaling(8.0, 8192);
  list.push_back({"llama-3.1-8b", c, "<|begin_of_text|>", "<|end_of_text|>"});
  c = make_config("llama", 22, 2048, 32, 4, 64, 5632, 32000, 10000.0, false, 2048, 1e-5, 256, 257);
  list.push_back({"tinyllama-1.1b", c, "<s>", "</s>"});
  c = make_config("qwen2", 24, 896, 14, 2, 64, 4864, 151936, 1000000.0, true, 32768, 1e-6, 151643, 151645);
  list.push_back({"qwen2.5-0.5b", c, "<|endoftext|>", "<|im_end|>"});
  c = make_config("llama", 6, 64, 4, 2, 16, 160, 320, 10000.0, false, 4096, 1e-5, 256, 257);
  list.push_back({"tiny", c, "<s>", "</s>"});
  c = make_config("qwen2", 6, 64, 4, 2, 16, 160, 320, 1000000.0, true, 4096, 1e-6, 256, 257);
  list.push_back({"tiny-qwen2", c, "<|endoftext|>", "<|im_end|>"});
  // original_max_position_embeddings 64 makes the llama3 scaling bend frequencies that a few
  // hundred test positions actually reach.
  c = make_config("llama", 6, 64, 4, 1, 16, 160, 320, 500000.0, true, 4096, 1e-5, 256, 257);
  c.rope_scaling = llama3_scaling(8.0, 64);
  list.push_back({"tiny-llama3", c, "<|begin_of_text|>", "<|end_of_text|>"});
  return list;
}

Preset find_preset(const std::string& name) {
  std::string names;
  for (const Preset& preset : presets()) {
    if (preset.name == name) return preset;
    names += (names.empty() ? "" : ", ") + preset.name;
  }
  throw Error("unknown random-model preset \"" + name + "\", available: " + names);
}

// Counter-based generator: element i of a tensor depends only on (seed, name, i), so any
// tensor can be regenerated on its own (the SwiftKV initialisation re-reads base tensors).
uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t tensor_seed(uint64_t seed, const std::string& name) {
  uint64_t hash = 0xcbf29ce484222325ull;  // FNV-1a of the name
  for (unsigned char ch : name) hash = (hash ^ ch) * 0x100000001b3ull;
  return splitmix64(seed ^ splitmix64(hash));
}

// Approximately N(0, std^2): the sum of four 16-bit uniforms (Irwin-Hall), rescaled. Cheap
// (one hash per value), which matters for the 8B preset's 8 billion values.
void fill_normal(uint64_t stream, size_t first, float* out, size_t count, float std) {
  const float scale = std * std::sqrt(3.0f) / 65536.0f;  // var of sum of 4 U(0,1) is 1/3
  for (size_t i = 0; i < count; ++i) {
    uint64_t bits = splitmix64(stream + (first + i) * 0xd1b54a32d192ed03ull);
    float sum = static_cast<float>((bits & 0xffff) + ((bits >> 16) & 0xffff) + ((bits >> 32) & 0xffff) +
                                   (bits >> 48));
    out[i] = (sum - 2.0f * 65535.0f) * scale;
  }
}

bool is_norm(const std::string& name) { return name.find("norm") != std::string::npos; }

// Values of a base tensor [first, first + count) as float. With round_to_dtype they are rounded
// to `dtype` first, so that a copy or mean of them matches what a reader of the file sees
// (not needed when they are about to be converted for writing anyway).
void base_values(uint64_t seed, const std::string& name, size_t first, float* out, size_t count, DType dtype,
                 bool round_to_dtype) {
  if (is_norm(name)) {
    std::fill(out, out + count, 1.0f);
    return;
  }
  fill_normal(tensor_seed(seed, name), first, out, count, 0.02f);
  if (round_to_dtype && dtype == DType::BF16)
    for (size_t i = 0; i < count; ++i) out[i] = bf16_to_f32(f32_to_bf16(out[i]));
}

void emit_as(const float* values, size_t count, DType dtype, const EmitBytes& emit) {
  if (dtype == DType::F32) {
    emit(values, count * sizeof(float));
    return;
  }
  std::vector<bf16_t> converted(count);
  for (size_t i = 0; i < count; ++i) converted[i] = f32_to_bf16(values[i]);
  emit(converted.data(), count * sizeof(bf16_t));
}

// GPT-2's byte <-> printable-character table, which ByteLevel pre-tokenizers and decoders use.
std::string byte_symbol(int byte) {
  auto printable = [](int b) {
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  };
  int code = byte;
  if (!printable(byte)) {
    code = 256;
    for (int b = 0; b < byte; ++b)
      if (!printable(b)) ++code;
  }
  std::string utf8;
  if (code < 0x80) {
    utf8 += static_cast<char>(code);
  } else {
    utf8 += static_cast<char>(0xc0 | (code >> 6));
    utf8 += static_cast<char>(0x80 | (code & 0x3f));
  }
  return utf8;
}

// A BPE without merges over the 256 byte symbols (ids 0..255): every byte is a token, so any
// text round-trips. Ids up to vocab_size are filler tokens; bos/eos are special added tokens.
json byte_level_tokenizer(const Preset& preset) {
  const ModelConfig& c = preset.config;
  const int bos = *c.bos_token_id, eos = c.eos_token_ids.front();
  json vocab = json::object();
  for (int byte = 0; byte < 256; ++byte) vocab[byte_symbol(byte)] = byte;
  for (int64_t id = 256; id < c.vocab_size; ++id) {
    if (id == bos)
      vocab[preset.bos_token] = id;
    else if (id == eos)
      vocab[preset.eos_token] = id;
    else
      vocab["<|reserved_" + std::to_string(id) + "|>"] = id;
  }
  auto special = [](int id, const std::string& content) {
    return json{{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
                {"rstrip", false}, {"normalized", false}, {"special", true}};
  };
  json byte_level = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens", {special(bos, preset.bos_token), special(eos, preset.eos_token)}},
          {"normalizer", nullptr},
          {"pre_tokenizer", byte_level},
          {"post_processor", nullptr},
          {"decoder", byte_level},
          {"model",
           {{"type", "BPE"},
            {"dropout", nullptr},
            {"unk_token", nullptr},
            {"continuing_subword_prefix", nullptr},
            {"end_of_word_suffix", nullptr},
            {"fuse_unk", false},
            {"byte_fallback", false},
            {"ignore_merges", false},
            {"vocab", vocab},
            {"merges", json::array()}}}};
}

json tokenizer_config(const Preset& preset) {
  return {{"bos_token", preset.bos_token},
          {"eos_token", preset.eos_token},
          {"add_bos_token", true},
          {"add_eos_token", false},
          {"clean_up_tokenization_spaces", false},
          {"model_max_length", preset.config.max_position_embeddings},
          {"tokenizer_class", "PreTrainedTokenizerFast"}};
}

}  // namespace

std::vector<std::string> random_model_presets() {
  std::vector<std::string> names;
  for (const Preset& preset : presets()) names.push_back(preset.name);
  return names;
}

ModelConfig random_model_config(const std::string& preset_name, std::optional<int64_t> num_key_value_layers,
                                int64_t key_value_group_size) {
  ModelConfig config = find_preset(preset_name).config;
  json raw = model_config_to_json(config);
  raw["num_key_value_layers"] = num_key_value_layers.value_or(0);
  raw["key_value_group_size"] = key_value_group_size;
  // The same checks (and messages) as a config.json on disk.
  ModelConfig parsed = parse_model_config(raw, "random-model " + preset_name);
  parsed.model_type = config.model_type + (parsed.swiftkv() ? "_swiftkv" : "");
  return parsed;
}

void write_random_model(const std::string& preset_name, std::optional<int64_t> num_key_value_layers,
                        int64_t key_value_group_size, const std::filesystem::path& out_dir, uint64_t seed,
                        DType dtype) {
  if (dtype == DType::F16) throw Error("random-model writes bf16 or f32 weights, not f16");
  const Preset preset = find_preset(preset_name);
  const ModelConfig config = random_model_config(preset_name, num_key_value_layers, key_value_group_size);
  ModelConfig base = config;
  base.num_key_value_layers = base.num_hidden_layers;
  base.key_value_group_size = 1;

  // Every base tensor (teacher q/k/v of all layers included), then the SwiftKV ones.
  std::vector<TensorSpec> specs;
  for (const ExpectedTensor& tensor : inference_tensors(base))
    specs.push_back({tensor.name, dtype, tensor.shape});
  const size_t base_count = specs.size();
  const std::vector<SwiftkvInitTensor> plan = swiftkv_init_plan(config);
  for (const SwiftkvInitTensor& tensor : plan) specs.push_back({tensor.name, dtype, tensor.shape});

  auto read_base = [&](const std::string& name) {
    for (size_t i = 0; i < base_count; ++i) {
      if (specs[i].name != name) continue;
      std::vector<float> values(specs[i].nbytes() / dtype_size(dtype));
      base_values(seed, name, 0, values.data(), values.size(), dtype, /*round_to_dtype=*/true);
      return values;
    }
    throw Error("random-model: no base tensor " + name);
  };

  write_model_directory(out_dir, [&](const std::filesystem::path& dir) {
    json config_json = model_config_to_json(config);
    config_json["torch_dtype"] = dtype == DType::BF16 ? "bfloat16" : "float32";
    write_json_file(dir / "config.json", config_json);
    write_json_file(dir / "generation_config.json",
                    {{"bos_token_id", *config.bos_token_id}, {"eos_token_id", config.eos_token_ids.front()}});
    write_json_file(dir / "tokenizer.json", byte_level_tokenizer(preset));
    write_json_file(dir / "tokenizer_config.json", tokenizer_config(preset));

    constexpr size_t kChunk = 1 << 20;  // elements per write: bounded memory for any tensor size
    std::vector<float> chunk(kChunk);
    write_safetensors_streaming(dir / "model.safetensors", specs, [&](size_t index, const EmitBytes& emit) {
      const size_t count = specs[index].nbytes() / dtype_size(dtype);
      if (index >= base_count) {
        std::vector<float> values = swiftkv_init_tensor(plan[index - base_count], read_base);
        emit_as(values.data(), count, dtype, emit);
        return;
      }
      for (size_t first = 0; first < count; first += kChunk) {
        const size_t n = std::min(kChunk, count - first);
        base_values(seed, specs[index].name, first, chunk.data(), n, dtype, /*round_to_dtype=*/false);
        emit_as(chunk.data(), n, dtype, emit);
      }
    });
  });
}

}  // namespace swiftkv::io
