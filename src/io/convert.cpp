#include "io/convert.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "common/bf16.h"
#include "common/error.h"
#include "common/files.h"
#include "io/checkpoint.h"
#include "io/model_dir.h"
#include "io/safetensors.h"
#include "io/swiftkv_transform.h"

namespace swiftkv::io {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// float -> IEEE half, round to nearest even (the mean of an F16 group is written back as F16).
uint16_t f32_to_f16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return sign | 0x7e00u;   // NaN
  if (magnitude >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds to infinity
  if (magnitude < 0x38800000u) {                        // below 2^-14: a half subnormal (or 0)
    float absolute;
    std::memcpy(&absolute, &magnitude, sizeof absolute);
    // Units of 2^-24 (exact scaling by a power of two), rounded to nearest even.
    return sign | static_cast<uint16_t>(std::nearbyint(absolute * 16777216.0f));
  }
  uint32_t half = ((((magnitude >> 23) - 127 + 15) << 10) | ((magnitude & 0x7fffffu) >> 13));
  const uint32_t rest = magnitude & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;  // a carry moves into the exponent
  return static_cast<uint16_t>(sign | half);
}

void emit_as(const std::vector<float>& values, DType dtype, const EmitBytes& emit) {
  if (dtype == DType::F32) {
    emit(values.data(), values.size() * sizeof(float));
    return;
  }
  std::vector<uint16_t> converted(values.size());
  for (size_t i = 0; i < values.size(); ++i)
    converted[i] = dtype == DType::BF16 ? f32_to_bf16(values[i]) : f32_to_f16(values[i]);
  emit(converted.data(), converted.size() * sizeof(uint16_t));
}

// Tensor data bytes of the mapping, in bounded pieces, dropping the pages read after each piece:
// RSS stays at a piece whatever the tensor size (a 1 GB embedding included).
void emit_stored(const TensorStore& store, const std::string& name, const EmitBytes& emit) {
  const TensorInfo& info = store.at(name);
  constexpr size_t kPiece = 64u << 20;
  for (size_t offset = 0; offset < info.nbytes; offset += kPiece) {
    emit(info.data + offset, std::min(kPiece, info.nbytes - offset));
    store.release(name);
  }
}

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Weights in any format (ours are rewritten; others would be stale copies of the base).
bool is_weight_file(const std::string& name) {
  for (const char* suffix : {".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf",
                             ".onnx", ".npz", ".pkl", ".index.json"})
    if (ends_with(name, suffix)) return true;
  return false;
}

void validate_layers(const ModelConfig& base, int64_t M, int64_t G) {
  const int64_t L = base.num_hidden_layers;
  if (G < 1) throw Error("--group-size must be at least 1, got " + std::to_string(G));
  if (M < 1 || M >= L)
    throw Error("--swiftkv-layers " + std::to_string(M) + " is out of range: this model has " +
                std::to_string(L) + " layers, so M must be between 1 and " + std::to_string(L - 1) +
                " (M layers run every prompt token; layers M.." + std::to_string(L - 1) +
                " get their K/V from layer M's input)");
  if ((L - M) % G != 0)
    throw Error("--group-size " + std::to_string(G) + " must divide the number of SwiftKV layers L - M = " +
                std::to_string(L) + " - " + std::to_string(M) + " = " + std::to_string(L - M) +
                " (AcrossKV groups consecutive later layers in groups of G)");
}

std::string shard_name(size_t index, size_t count) {
  char name[64];
  std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", index + 1, count);
  return name;
}

}  // namespace

int64_t swiftkv_layers_for_skip_fraction(int64_t num_hidden_layers, double skip_fraction,
                                         int64_t group_size) {
  const int64_t L = num_hidden_layers, G = group_size;
  char fraction[32];
  std::snprintf(fraction, sizeof fraction, "%g", skip_fraction);
  if (!(skip_fraction > 0 && skip_fraction < 1))
    throw Error(std::string("--skip-fraction must be strictly between 0 and 1, got ") + fraction);
  if (G < 1) throw Error("--group-size must be at least 1, got " + std::to_string(G));
  // Nearest multiple of G to F * L, ties to the smaller (the 1e-9 absorbs 0.3 * 10 = 3.0000000000000004).
  const double groups = skip_fraction * static_cast<double>(L) / static_cast<double>(G);
  const int64_t skipped = G * static_cast<int64_t>(std::ceil(groups - 0.5 - 1e-9));
  char product[32];
  std::snprintf(product, sizeof product, "%g", skip_fraction * static_cast<double>(L));
  const std::string how = std::string("--skip-fraction ") + fraction + " of " + std::to_string(L) +
                          " layers = " + product + " skipped layers, rounded to a multiple of --group-size " +
                          std::to_string(G) + ", is " + std::to_string(skipped);
  if (skipped <= 0)
    throw Error(how + ": no layer would be skipped; use a larger fraction or --swiftkv-layers");
  if (skipped >= L)
    throw Error(how +
                ": no layer would be left to compute the K/V from (M must be at least 1); use a smaller "
                "fraction or --swiftkv-layers");
  return L - skipped;
}

ConvertResult convert_to_swiftkv(const fs::path& base_dir, const fs::path& out_dir,
                                 const ConvertOptions& options) {
  const fs::path config_path = base_dir / "config.json";
  if (!fs::exists(config_path))
    throw Error("no config.json in " + base_dir.string() + " (expected a Hugging Face model directory)");
  json config_json = read_json_file(config_path);
  const ModelConfig base = parse_model_config(config_json, config_path.string());
  if (base.swiftkv() || ends_with(base.model_type, "_swiftkv"))
    throw Error(base_dir.string() + " is already a SwiftKV checkpoint (model_type " + base.model_type +
                ", num_key_value_layers " + std::to_string(base.num_key_value_layers) +
                "); convert its base model instead (re-converting would throw away the trained *_swiftkv "
                "tensors and start again from the teacher's q/k/v)");

  if (options.swiftkv_layers.has_value() == options.skip_fraction.has_value())
    throw Error("give exactly one of --swiftkv-layers M and --skip-fraction F");
  const int64_t G = options.group_size;
  const int64_t M = options.swiftkv_layers
                        ? *options.swiftkv_layers
                        : swiftkv_layers_for_skip_fraction(base.num_hidden_layers, *options.skip_fraction, G);
  validate_layers(base, M, G);
  if (options.max_shard_bytes == 0) throw Error("--max-shard-size must be positive");

  // Snowflake's config: the base's fields, SwiftKV's five set the way model_config_to_json
  // names them; parsed again so that what we write is what the engine reads.
  ModelConfig swiftkv_config = base;
  swiftkv_config.num_key_value_layers = M;
  swiftkv_config.key_value_group_size = G;
  const json swiftkv_fields = model_config_to_json(swiftkv_config);
  for (const char* field :
       {"model_type", "architectures", "swiftkv", "num_key_value_layers", "key_value_group_size"})
    config_json[field] = swiftkv_fields.at(field);
  ConvertResult result;
  result.config = parse_model_config(config_json, "converted config.json");

  TensorStore store = TensorStore::open(base_dir);
  validate_checkpoint(base, store);  // every base tensor present with its shape; nothing unexpected

  // Base tensors (sorted names), less the teacher's when dropped, then the new ones.
  std::set<std::string> dropped;
  if (options.drop_teacher)
    for (const ExpectedTensor& tensor : teacher_tensors(result.config)) dropped.insert(tensor.name);
  std::vector<TensorSpec> specs;
  std::vector<const SwiftkvInitTensor*> planned;  // per spec: null for a base tensor
  for (const std::string& name : store.names()) {
    if (dropped.count(name)) {
      ++result.dropped_tensors;
      continue;
    }
    const TensorInfo& info = store.at(name);
    specs.push_back({name, info.dtype, info.shape});
    planned.push_back(nullptr);
  }
  result.copied_tensors = static_cast<int64_t>(specs.size());
  const std::vector<SwiftkvInitTensor> plan = swiftkv_init_plan(result.config);
  for (const SwiftkvInitTensor& tensor : plan) {
    const TensorInfo& source = store.at(tensor.sources.front());
    if (source.shape != tensor.shape)
      throw Error("cannot initialise " + tensor.name + " " + shape_string(tensor.shape) + " from " +
                  source.name + ", which has shape " + shape_string(source.shape));
    specs.push_back({tensor.name, source.dtype, tensor.shape});
    planned.push_back(&tensor);
  }
  result.new_tensors = static_cast<int64_t>(plan.size());

  // Shards filled in order up to max_shard_bytes.
  std::vector<std::vector<size_t>> shards(1);
  uint64_t shard_bytes = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    const uint64_t bytes = specs[i].nbytes();
    if (!shards.back().empty() && shard_bytes + bytes > options.max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(i);
    shard_bytes += bytes;
    result.tensor_bytes += bytes;
  }
  result.shards = static_cast<int64_t>(shards.size());

  auto write_tensor = [&](size_t index, const EmitBytes& emit) {
    const SwiftkvInitTensor* tensor = planned[index];
    if (!tensor) {
      emit_stored(store, specs[index].name, emit);
    } else if (tensor->sources.size() == 1) {
      emit_stored(store, tensor->sources.front(), emit);  // a copy: the very bytes, as for base tensors
    } else {
      std::vector<float> mean = swiftkv_init_tensor(*tensor, [&](const std::string& name) {
        std::vector<float> values = store.read_f32(name);
        store.release(name);
        return values;
      });
      emit_as(mean, specs[index].dtype, emit);
    }
  };

  // Non-weight files of the base directory, sorted for a deterministic report.
  std::vector<fs::path> entries;
  for (const fs::directory_entry& entry : fs::directory_iterator(base_dir)) entries.push_back(entry.path());
  std::sort(entries.begin(), entries.end());
  std::vector<fs::path> to_copy;
  for (const fs::path& path : entries) {
    const std::string name = path.filename().string();
    if (name == "config.json") continue;  // rewritten
    if (name.empty() || name[0] == '.' || !fs::is_regular_file(path) || is_weight_file(name)) {
      if (name.find(".safetensors") == std::string::npos) result.skipped_files.push_back(name);
      continue;
    }
    to_copy.push_back(path);
    result.copied_files.push_back(name);
  }

  write_model_directory(out_dir, [&](const fs::path& staging) {
    write_json_file(staging / "config.json", config_json);
    for (const fs::path& path : to_copy) {
      std::ifstream in(path, std::ios::binary);
      std::stringstream content;
      content << in.rdbuf();
      if (!in && !in.eof()) throw Error("cannot read " + path.string());
      const std::string bytes = content.str();
      write_file_atomically(staging / path.filename(), [&](int fd) {
        write_all(fd, bytes.data(), bytes.size(), staging / path.filename());
      });
    }
    if (shards.size() == 1) {
      write_safetensors_streaming(staging / "model.safetensors", specs, write_tensor);
      return;
    }
    json weight_map = json::object();
    for (size_t s = 0; s < shards.size(); ++s) {
      std::vector<TensorSpec> shard_specs;
      for (size_t index : shards[s]) {
        shard_specs.push_back(specs[index]);
        weight_map[specs[index].name] = shard_name(s, shards.size());
      }
      write_safetensors_streaming(staging / shard_name(s, shards.size()), shard_specs,
                                  [&](size_t i, const EmitBytes& emit) { write_tensor(shards[s][i], emit); });
    }
    write_json_file(staging / "model.safetensors.index.json",
                    {{"metadata", {{"total_size", result.tensor_bytes}}}, {"weight_map", weight_map}});
  });
  return result;
}

}  // namespace swiftkv::io
