#include "io/model_config.h"

#include <cmath>
#include <limits>

#include "common/error.h"
#include "common/files.h"

namespace swiftkv::io {
namespace {

using nlohmann::json;

// Field readers: every error names the file and the field, so a user can fix config.json.
class Fields {
 public:
  Fields(const json& object, std::string source) : object_(object), source_(std::move(source)) {}

  [[noreturn]] void fail(const std::string& field, const std::string& problem) const {
    throw Error(source_ + ": \"" + field + "\" " + problem);
  }
  bool has(const std::string& field) const { return object_.contains(field) && !object_.at(field).is_null(); }
  int64_t integer(const std::string& field) const {
    if (!has(field)) fail(field, "is missing");
    return integer_value(field, object_.at(field));
  }
  int64_t integer(const std::string& field, int64_t fallback) const {
    return has(field) ? integer(field) : fallback;
  }
  double number(const std::string& field, double fallback) const {
    if (!has(field)) return fallback;
    const json& value = object_.at(field);
    if (!value.is_number()) fail(field, "must be a number, got " + value.dump());
    return value.get<double>();
  }
  bool boolean(const std::string& field, bool fallback) const {
    if (!has(field)) return fallback;
    const json& value = object_.at(field);
    if (!value.is_boolean()) fail(field, "must be true or false, got " + value.dump());
    return value.get<bool>();
  }
  std::string string(const std::string& field) const {
    if (!has(field)) fail(field, "is missing");
    const json& value = object_.at(field);
    if (!value.is_string()) fail(field, "must be a string, got " + value.dump());
    return value.get<std::string>();
  }
  // A token id given as an int or a list of ints (HF allows both for eos_token_id).
  std::vector<int> token_ids(const std::string& field) const {
    if (!has(field)) return {};
    const json& value = object_.at(field);
    std::vector<int64_t> values;
    if (value.is_array()) {
      for (const json& item : value) values.push_back(integer_value(field, item));
    } else {
      values.push_back(integer_value(field, value));
    }
    std::vector<int> ids;
    for (int64_t id : values) {
      if (id < 0 || id > std::numeric_limits<int32_t>::max())
        fail(field, "must hold token ids in [0, 2^31), got " + value.dump());
      ids.push_back(static_cast<int>(id));
    }
    return ids;
  }
  const json& at(const std::string& field) const { return object_.at(field); }

 private:
  int64_t integer_value(const std::string& field, const json& value) const {
    if (value.is_number_unsigned() && value.get<uint64_t>() > uint64_t{std::numeric_limits<int64_t>::max()})
      fail(field, "is out of range: " + value.dump());
    if (value.is_number_integer()) return value.get<int64_t>();
    // Some exporters write 8192.0; accept a float only when it is a whole number.
    // (Within int64's range: casting a larger double is undefined.)
    if (value.is_number_float() && std::floor(value.get<double>()) == value.get<double>() &&
        std::abs(value.get<double>()) < 9.0e18)
      return static_cast<int64_t>(value.get<double>());
    fail(field, "must be an integer, got " + value.dump());
  }

  const json& object_;
  std::string source_;
};

RopeScaling parse_rope_scaling(const Fields& fields, const std::string& source) {
  RopeScaling scaling;
  if (!fields.has("rope_scaling")) return scaling;
  const json& value = fields.at("rope_scaling");
  if (!value.is_object()) fields.fail("rope_scaling", "must be null or an object, got " + value.dump());
  Fields rope(value, source + ": rope_scaling");
  // Newer transformers write "rope_type", older ones "type"; either names the scheme.
  std::string type = rope.has("rope_type") ? rope.string("rope_type")
                     : rope.has("type")    ? rope.string("type")
                                           : std::string();
  if (type.empty()) rope.fail("rope_type", "is missing");
  if (type == "default") return scaling;
  if (type != "linear" && type != "llama3")
    rope.fail("rope_type", "is \"" + type + "\", supported: linear, llama3 (or rope_scaling: null)");
  scaling.type = type;
  if (!rope.has("factor")) rope.fail("factor", "is missing");
  scaling.factor = rope.number("factor", 1.0);
  if (!(scaling.factor > 0)) rope.fail("factor", "must be positive");
  if (type == "llama3") {
    scaling.low_freq_factor = rope.number("low_freq_factor", scaling.low_freq_factor);
    scaling.high_freq_factor = rope.number("high_freq_factor", scaling.high_freq_factor);
    scaling.original_max_position_embeddings =
        rope.integer("original_max_position_embeddings", scaling.original_max_position_embeddings);
    if (!(scaling.low_freq_factor > 0)) rope.fail("low_freq_factor", "must be positive");
    if (!(scaling.high_freq_factor > scaling.low_freq_factor))
      rope.fail("high_freq_factor", "must be greater than low_freq_factor");
    if (scaling.original_max_position_embeddings <= 0)
      rope.fail("original_max_position_embeddings", "must be positive");
  }
  return scaling;
}

bool is_qwen2(const std::string& model_type) { return model_type.rfind("qwen2", 0) == 0; }

}  // namespace

ModelConfig parse_model_config(const json& config, const std::string& source) {
  if (!config.is_object()) throw Error(source + ": expected a JSON object, got " + config.dump());
  Fields fields(config, source);
  ModelConfig c;
  c.model_type = fields.string("model_type");
  if (c.model_type != "llama" && c.model_type != "llama_swiftkv" && c.model_type != "qwen2" &&
      c.model_type != "qwen2_swiftkv")
    fields.fail("model_type",
                "is \"" + c.model_type + "\", supported: llama, llama_swiftkv, qwen2, qwen2_swiftkv");
  const bool qwen2 = is_qwen2(c.model_type);

  c.vocab_size = fields.integer("vocab_size");
  c.hidden_size = fields.integer("hidden_size");
  c.intermediate_size = fields.integer("intermediate_size");
  c.num_hidden_layers = fields.integer("num_hidden_layers");
  c.num_attention_heads = fields.integer("num_attention_heads");
  // Transformers' defaults when a field is absent: no GQA, head_dim = H / nq, eps 1e-6.
  c.num_key_value_heads = fields.integer("num_key_value_heads", c.num_attention_heads);
  for (const char* field : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                            "num_attention_heads", "num_key_value_heads"}) {
    if (fields.integer(field, 1) <= 0) fields.fail(field, "must be positive, got " + fields.at(field).dump());
  }
  if (fields.has("head_dim")) {
    c.head_dim = fields.integer("head_dim");
    if (c.head_dim <= 0) fields.fail("head_dim", "must be positive, got " + std::to_string(c.head_dim));
  } else {
    if (c.hidden_size % c.num_attention_heads != 0)
      fields.fail("num_attention_heads", "(" + std::to_string(c.num_attention_heads) +
                                             ") must divide hidden_size (" + std::to_string(c.hidden_size) +
                                             ") when head_dim is not given");
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  if (c.head_dim % 2 != 0)
    fields.fail("head_dim", "must be even for RoPE, got " + std::to_string(c.head_dim));
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    fields.fail("num_key_value_heads", "(" + std::to_string(c.num_key_value_heads) +
                                           ") must divide num_attention_heads (" +
                                           std::to_string(c.num_attention_heads) + ")");

  c.rms_norm_eps = fields.number("rms_norm_eps", 1e-6);
  if (!(c.rms_norm_eps > 0)) fields.fail("rms_norm_eps", "must be positive");
  c.rope_theta = fields.number("rope_theta", 10000.0);
  if (!(c.rope_theta > 0)) fields.fail("rope_theta", "must be positive");
  c.rope_scaling = parse_rope_scaling(fields, source);
  c.tie_word_embeddings = fields.boolean("tie_word_embeddings", false);
  c.attention_bias = qwen2 || fields.boolean("attention_bias", false);
  c.max_position_embeddings = fields.integer("max_position_embeddings", qwen2 ? 32768 : 2048);
  if (c.max_position_embeddings <= 0) fields.fail("max_position_embeddings", "must be positive");

  // Features this engine does not implement are refused rather than silently computed wrong.
  if (fields.has("hidden_act") && fields.string("hidden_act") != "silu")
    fields.fail("hidden_act", "is \"" + fields.string("hidden_act") + "\", supported: silu");
  if (fields.boolean("mlp_bias", false)) fields.fail("mlp_bias", "is true; MLP biases are not supported");
  if (qwen2 && fields.boolean("use_sliding_window", false))
    fields.fail("use_sliding_window", "is true; sliding-window attention is not supported");

  std::vector<int> bos = fields.token_ids("bos_token_id");
  if (!bos.empty()) c.bos_token_id = bos.front();
  c.eos_token_ids = fields.token_ids("eos_token_id");
  for (int id : bos)
    if (id >= c.vocab_size)
      fields.fail("bos_token_id",
                  "is outside the vocabulary (vocab_size " + std::to_string(c.vocab_size) + ")");
  for (int id : c.eos_token_ids)
    if (id >= c.vocab_size)
      fields.fail("eos_token_id",
                  "is outside the vocabulary (vocab_size " + std::to_string(c.vocab_size) + ")");

  // SwiftKV: absent or 0 means off, as in the reference code.
  const int64_t L = c.num_hidden_layers;
  c.num_key_value_layers = fields.integer("num_key_value_layers", 0);
  if (c.num_key_value_layers == 0) c.num_key_value_layers = L;
  if (c.num_key_value_layers < 1 || c.num_key_value_layers > L)
    fields.fail("num_key_value_layers", "is " + std::to_string(c.num_key_value_layers) +
                                            ", must be between 1 and num_hidden_layers (" +
                                            std::to_string(L) + "), or 0 for no SwiftKV");
  c.key_value_group_size = fields.integer("key_value_group_size", 1);
  if (c.key_value_group_size < 1)
    fields.fail("key_value_group_size", "must be at least 1, got " + std::to_string(c.key_value_group_size));
  if ((L - c.num_key_value_layers) % c.key_value_group_size != 0)
    fields.fail("key_value_group_size",
                "(" + std::to_string(c.key_value_group_size) + ") must divide the number of SwiftKV layers " +
                    "num_hidden_layers - num_key_value_layers = " + std::to_string(L) + " - " +
                    std::to_string(c.num_key_value_layers) + " = " +
                    std::to_string(L - c.num_key_value_layers));
  return c;
}

json model_config_to_json(const ModelConfig& c) {
  const bool qwen2 = is_qwen2(c.model_type);
  json j;
  if (c.swiftkv()) {
    j["model_type"] = qwen2 ? "qwen2_swiftkv" : "llama_swiftkv";
    j["architectures"] = {qwen2 ? "Qwen2SwiftKVForCausalLM" : "LlamaSwiftKVForCausalLM"};
    j["swiftkv"] = true;
    j["num_key_value_layers"] = c.num_key_value_layers;
    j["key_value_group_size"] = c.key_value_group_size;
  } else {
    j["model_type"] = qwen2 ? "qwen2" : "llama";
    j["architectures"] = {qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM"};
  }
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim;
  j["hidden_act"] = "silu";
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  if (c.rope_scaling.type == "none") {
    j["rope_scaling"] = nullptr;
  } else {
    json rope = {{"rope_type", c.rope_scaling.type}, {"factor", c.rope_scaling.factor}};
    if (c.rope_scaling.type == "llama3") {
      rope["low_freq_factor"] = c.rope_scaling.low_freq_factor;
      rope["high_freq_factor"] = c.rope_scaling.high_freq_factor;
      rope["original_max_position_embeddings"] = c.rope_scaling.original_max_position_embeddings;
    }
    j["rope_scaling"] = rope;
  }
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  if (!qwen2) j["attention_bias"] = c.attention_bias;
  j["max_position_embeddings"] = c.max_position_embeddings;
  if (c.bos_token_id) j["bos_token_id"] = *c.bos_token_id;
  if (c.eos_token_ids.size() == 1) j["eos_token_id"] = c.eos_token_ids.front();
  if (c.eos_token_ids.size() > 1) j["eos_token_id"] = c.eos_token_ids;
  return j;
}

ModelConfig load_model_config(const std::filesystem::path& model_dir) {
  std::filesystem::path config_path = model_dir / "config.json";
  ModelConfig config = parse_model_config(read_json_file(config_path), config_path.string());
  std::filesystem::path generation_path = model_dir / "generation_config.json";
  if (std::filesystem::exists(generation_path)) {
    json generation = read_json_file(generation_path);
    if (!generation.is_object()) throw Error(generation_path.string() + ": expected a JSON object");
    Fields fields(generation, generation_path.string());
    // As in vLLM, generation_config.json's eos ids win (Llama-3 instruct lists its <|eot_id|> only there).
    std::vector<int> eos = fields.token_ids("eos_token_id");
    for (int id : eos)
      if (id >= config.vocab_size)
        fields.fail("eos_token_id",
                    "is outside the vocabulary (vocab_size " + std::to_string(config.vocab_size) + ")");
    if (!eos.empty()) config.eos_token_ids = eos;
    std::vector<int> bos = fields.token_ids("bos_token_id");
    if (!config.bos_token_id && !bos.empty() && bos.front() < config.vocab_size)
      config.bos_token_id = bos.front();
  }
  return config;
}

GenerationDefaults load_generation_defaults(const std::filesystem::path& model_dir) {
  GenerationDefaults defaults;
  std::filesystem::path path = model_dir / "generation_config.json";
  if (!std::filesystem::exists(path)) return defaults;
  json generation = read_json_file(path);
  if (!generation.is_object()) throw Error(path.string() + ": expected a JSON object");
  Fields fields(generation, path.string());
  if (fields.has("temperature")) defaults.temperature = fields.number("temperature", 1.0);
  if (fields.has("top_p")) defaults.top_p = fields.number("top_p", 1.0);
  if (fields.has("min_p")) defaults.min_p = fields.number("min_p", 0.0);
  if (fields.has("repetition_penalty"))
    defaults.repetition_penalty = fields.number("repetition_penalty", 1.0);
  if (fields.has("top_k")) defaults.top_k = static_cast<int>(fields.integer("top_k"));
  if (fields.has("do_sample")) defaults.do_sample = fields.boolean("do_sample", false);
  if (defaults.temperature && *defaults.temperature < 0) fields.fail("temperature", "must not be negative");
  if (defaults.top_p && (*defaults.top_p <= 0 || *defaults.top_p > 1))
    fields.fail("top_p", "must be in (0, 1]");
  if (defaults.top_k && *defaults.top_k < 0) fields.fail("top_k", "must not be negative");
  return defaults;
}

}  // namespace swiftkv::io
