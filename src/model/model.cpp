#include "model/model.h"

#include <cstring>
#include <string>

#include "common/bf16.h"
#include "common/error.h"
#include "io/checkpoint.h"

namespace swiftkv::model {

struct Model::Layer {
  std::vector<float> input_norm, post_attention_norm;
  std::optional<kernels::Linear> qkv;               // fused [q; k; v]: layers < M, teacher for layers >= M
  std::optional<kernels::Linear> q_swiftkv;         // layers >= M
  std::optional<kernels::Linear> o, gate_up, down;  // gate_up: fused [gate; up]
};

struct Model::Scratch {
  std::vector<float> hidden, kept_hidden, normed, projected, attended, out, gate_up, activated, swiftkv_kv;
  KvBlockPointers kv_blocks;
};

namespace {

// The first n floats of a reused buffer (grown when needed, never shrunk).
float* first(std::vector<float>& buffer, int64_t n) {
  if (buffer.size() < static_cast<size_t>(n)) buffer.resize(static_cast<size_t>(n));
  return buffer.data();
}

std::string layer_prefix(int64_t layer) { return "model.layers." + std::to_string(layer) + "."; }

// Packs the row-wise concatenation of `weights` (each [out_i, in]) as one Linear, with the
// matching biases concatenated when `biases` is not empty, then releases the mapped pages.
// bf16 checkpoints packed as bf16 go straight from the mapping (no float32 copy); fused
// weights are concatenated in `staging`, reused across calls so that loading does not fault
// in and zero fresh pages for every layer.
kernels::Linear pack_rows(const io::TensorStore& store, const std::vector<std::string>& weights,
                          const std::vector<std::string>& biases, kernels::WeightType type,
                          std::vector<bf16_t>& staging) {
  const int64_t in_features = store.at(weights.front()).shape.at(1);
  int64_t out_features = 0;
  bool all_bf16 = type == kernels::WeightType::BF16;
  for (const auto& name : weights) {
    out_features += store.at(name).shape.at(0);
    all_bf16 = all_bf16 && store.at(name).dtype == io::DType::BF16;
  }
  std::vector<float> bias;
  for (const auto& name : biases) {
    std::vector<float> part = store.read_f32(name);
    bias.insert(bias.end(), part.begin(), part.end());
  }
  const float* bias_data = bias.empty() ? nullptr : bias.data();

  auto packed = [&]() -> kernels::Linear {
    if (all_bf16) {
      const io::TensorInfo& only = store.at(weights.front());
      if (weights.size() == 1 && reinterpret_cast<uintptr_t>(only.data) % alignof(bf16_t) == 0)
        return kernels::Linear(reinterpret_cast<const bf16_t*>(only.data), out_features, in_features,
                               bias_data);
      if (staging.size() < static_cast<size_t>(out_features * in_features))
        staging.resize(static_cast<size_t>(out_features * in_features));
      std::byte* cursor = reinterpret_cast<std::byte*>(staging.data());
      for (const auto& name : weights) {
        std::memcpy(cursor, store.at(name).data, store.at(name).nbytes);
        cursor += store.at(name).nbytes;
      }
      return kernels::Linear(staging.data(), out_features, in_features, bias_data);
    }
    std::vector<float> weight;
    weight.reserve(static_cast<size_t>(out_features * in_features));
    for (const auto& name : weights) {
      std::vector<float> part = store.read_f32(name);
      weight.insert(weight.end(), part.begin(), part.end());
    }
    return kernels::Linear(weight.data(), out_features, in_features, type, bias_data);
  }();
  for (const auto& name : weights) store.release(name);
  return packed;
}

std::vector<std::string> with_suffix(const std::string& prefix, std::initializer_list<const char*> names,
                                     const char* suffix) {
  std::vector<std::string> out;
  for (const char* name : names) out.push_back(prefix + name + suffix);
  return out;
}

// h += delta, (rows, hidden).
void add_in_place(float* h, const float* delta, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) h[i] += delta[i];
}

}  // namespace

Model::Model() = default;
Model::~Model() = default;

std::unique_ptr<Model::Scratch> Model::take_scratch() const {
  std::lock_guard<std::mutex> lock(scratch_mutex_);
  if (scratch_pool_.empty()) return std::make_unique<Scratch>();
  std::unique_ptr<Scratch> scratch = std::move(scratch_pool_.back());
  scratch_pool_.pop_back();
  return scratch;
}

void Model::return_scratch(std::unique_ptr<Scratch> scratch) const {
  std::lock_guard<std::mutex> lock(scratch_mutex_);
  scratch_pool_.push_back(std::move(scratch));
}

std::unique_ptr<Model> Model::load(const std::filesystem::path& model_dir, const LoadOptions& options) {
  std::unique_ptr<Model> model(new Model());
  io::ModelConfig& config = model->config_;
  config = io::load_model_config(model_dir);
  model->store_.emplace(io::TensorStore::open(model_dir));
  const io::TensorStore& store = *model->store_;
  io::validate_checkpoint(config, store);

  const int64_t num_layers = config.num_hidden_layers, first_swiftkv = config.num_key_value_layers;
  const auto type = options.weight_type;
  const bool bias = config.attention_bias;
  std::vector<bf16_t> staging;
  if (options.load_teacher && config.swiftkv()) {
    for (int64_t l = first_swiftkv; l < num_layers; ++l)
      for (const auto& name :
           with_suffix(layer_prefix(l) + "self_attn.", {"q_proj", "k_proj", "v_proj"}, ".weight"))
        if (!store.contains(name))
          throw Error("--swiftkv off needs the teacher's " + name + ", which " + model_dir.string() +
                      " does not have (converted with --drop-teacher?)");
  }

  model->embedding_ = &store.at("model.embed_tokens.weight");
  model->layers_.resize(static_cast<size_t>(num_layers));
  for (int64_t l = 0; l < num_layers; ++l) {
    Layer& layer = model->layers_[static_cast<size_t>(l)];
    const std::string prefix = layer_prefix(l), attn = prefix + "self_attn.";
    layer.input_norm = store.read_f32(prefix + "input_layernorm.weight");
    layer.post_attention_norm = store.read_f32(prefix + "post_attention_layernorm.weight");
    if (l < first_swiftkv || options.load_teacher) {
      layer.qkv = pack_rows(
          store, with_suffix(attn, {"q_proj", "k_proj", "v_proj"}, ".weight"),
          bias ? with_suffix(attn, {"q_proj", "k_proj", "v_proj"}, ".bias") : std::vector<std::string>{},
          type, staging);
    }
    if (l >= first_swiftkv && options.load_student) {
      layer.q_swiftkv = pack_rows(
          store, {attn + "q_proj_swiftkv.weight"},
          bias ? std::vector<std::string>{attn + "q_proj_swiftkv.bias"} : std::vector<std::string>{}, type,
          staging);
    }
    layer.o = pack_rows(store, {attn + "o_proj.weight"}, {}, type, staging);
    layer.gate_up = pack_rows(store, with_suffix(prefix + "mlp.", {"gate_proj", "up_proj"}, ".weight"), {},
                              type, staging);
    layer.down = pack_rows(store, {prefix + "mlp.down_proj.weight"}, {}, type, staging);
  }
  model->final_norm_ = store.read_f32("model.norm.weight");

  if (config.swiftkv() && options.load_student) {
    model->norm_swiftkv_ = store.read_f32("model.norm_swiftkv.weight");
    std::vector<std::string> weights, biases;
    for (int64_t leader = first_swiftkv; leader < num_layers; leader += config.key_value_group_size) {
      for (const char* name : {"k_proj_swiftkv", "v_proj_swiftkv"}) {
        weights.push_back(layer_prefix(leader) + "self_attn." + name + ".weight");
        if (bias) biases.push_back(layer_prefix(leader) + "self_attn." + name + ".bias");
      }
    }
    model->swiftkv_kv_ = pack_rows(store, weights, biases, type, staging);
  }

  model->lm_head_ =
      pack_rows(store, {config.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight"}, {},
                type, staging);
  model->rope_ = std::make_unique<kernels::RopeTable>(config.head_dim, config.rope_theta, config.rope_scaling,
                                                      config.max_position_embeddings);
  return model;
}

bool Model::has_teacher() const {
  for (const Layer& layer : layers_)
    if (!layer.qkv) return false;
  return true;
}

bool Model::has_student() const { return !config_.swiftkv() || swiftkv_kv_.has_value(); }

int64_t num_kv_caches(const io::ModelConfig& config, Path path) {
  return path == Path::Teacher ? config.num_hidden_layers : config.num_kv_caches();
}

int64_t kv_bytes_per_token(const io::ModelConfig& config, Path path, KvDType dtype) {
  return num_kv_caches(config, path) *
         KvPool::bytes_per_token(config.num_key_value_heads, config.head_dim, dtype);
}

int64_t Model::num_caches(Path path) const { return num_kv_caches(config_, path); }

KvCache Model::make_cache(int64_t capacity, Path path, KvDType dtype) const {
  return KvCache(num_caches(path), capacity, config_.num_key_value_heads, config_.head_dim, dtype);
}

KvPool Model::make_pool(int64_t num_blocks, int64_t block_size, Path path, KvDType dtype) const {
  return KvPool(num_caches(path), num_blocks, block_size, config_.num_key_value_heads, config_.head_dim,
                dtype);
}

int64_t Model::kv_bytes_per_token(Path path, KvDType dtype) const {
  return model::kv_bytes_per_token(config_, path, dtype);
}

size_t Model::weight_bytes() const {
  size_t bytes = lm_head_->packed_bytes() + (swiftkv_kv_ ? swiftkv_kv_->packed_bytes() : 0);
  for (const Layer& layer : layers_) {
    for (const auto* linear : {&layer.qkv, &layer.q_swiftkv, &layer.o, &layer.gate_up, &layer.down})
      if (*linear) bytes += (*linear)->packed_bytes();
  }
  return bytes;
}

void Model::embed(std::span<const int32_t> tokens, float* out) const {
  const int64_t hidden = config_.hidden_size;
  const size_t row_bytes = static_cast<size_t>(hidden) * io::dtype_size(embedding_->dtype);
  for (size_t t = 0; t < tokens.size(); ++t) {
    const std::byte* row = embedding_->data + static_cast<size_t>(tokens[t]) * row_bytes;
    float* dst = out + static_cast<int64_t>(t) * hidden;
    // The mapped data need not be aligned: read it with memcpy.
    auto half = [row](int64_t i) {
      uint16_t bits;
      std::memcpy(&bits, row + 2 * i, sizeof bits);
      return bits;
    };
    switch (embedding_->dtype) {
      case io::DType::F32:
        std::memcpy(dst, row, row_bytes);
        break;
      case io::DType::BF16:
        for (int64_t i = 0; i < hidden; ++i) dst[i] = bf16_to_f32(half(i));
        break;
      case io::DType::F16:
        for (int64_t i = 0; i < hidden; ++i) dst[i] = f16_to_f32(half(i));
        break;
    }
  }
}

void Model::attention_block(const Layer& layer, float* h, int64_t rows, const int32_t* positions,
                            const std::vector<Segment>& segments, KvPool& pool, int64_t cache_index,
                            bool write_kv, Scratch& scratch) const {
  const int64_t hidden = config_.hidden_size, nq = config_.num_attention_heads,
                nkv = config_.num_key_value_heads, d = config_.head_dim;
  float* normed = first(scratch.normed, rows * hidden);
  kernels::rmsnorm(h, layer.input_norm.data(), rows, hidden, static_cast<float>(config_.rms_norm_eps),
                   normed);

  // q (and, for KV-producing layers, k and v) with RoPE applied.
  const int64_t q_stride = write_kv ? (nq + 2 * nkv) * d : nq * d;
  float* projected = first(scratch.projected, rows * q_stride);
  if (write_kv) {
    layer.qkv->forward(normed, rows, projected);
    kernels::apply_rope(projected + nq * d, rows, q_stride, nkv, positions, *rope_);
    for (const Segment& segment : segments) {
      for (int64_t r = segment.first_row; r < segment.first_row + segment.rows; ++r) {
        const float* k = projected + r * q_stride + nq * d;
        pool.write(cache_index, *segment.block_table, positions[r], k, k + nkv * d);
      }
    }
  } else {
    layer.q_swiftkv->forward(normed, rows, projected);
  }
  kernels::apply_rope(projected, rows, q_stride, nq, positions, *rope_);

  float* attended = first(scratch.attended, rows * nq * d);
  for (const Segment& segment : segments) {
    kernels::attention(projected + segment.first_row * q_stride, segment.rows, q_stride,
                       pool.view(cache_index, *segment.block_table, scratch.kv_blocks),
                       positions + segment.first_row, {nq, nkv, d}, attended + segment.first_row * nq * d,
                       nq * d);
  }
  float* out = first(scratch.out, rows * hidden);
  layer.o->forward(attended, rows, out);
  add_in_place(h, out, rows * hidden);
}

void Model::mlp_block(const Layer& layer, float* h, int64_t rows, Scratch& scratch) const {
  const int64_t hidden = config_.hidden_size, ffn = config_.intermediate_size;
  float* normed = first(scratch.normed, rows * hidden);
  kernels::rmsnorm(h, layer.post_attention_norm.data(), rows, hidden,
                   static_cast<float>(config_.rms_norm_eps), normed);
  float* gate_up = first(scratch.gate_up, rows * 2 * ffn);
  float* activated = first(scratch.activated, rows * ffn);
  layer.gate_up->forward(normed, rows, gate_up);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r)
    kernels::swiglu(gate_up + r * 2 * ffn, gate_up + r * 2 * ffn + ffn, ffn, activated + r * ffn);
  float* out = first(scratch.out, rows * hidden);
  layer.down->forward(activated, rows, out);
  add_in_place(h, out, rows * hidden);
}

std::vector<float> Model::forward(std::span<const int32_t> tokens, int64_t start_position, KvCache& cache,
                                  Path path, Logits logits) const {
  if (start_position + static_cast<int64_t>(tokens.size()) > cache.capacity())
    throw Error("sequence of " + std::to_string(start_position + static_cast<int64_t>(tokens.size())) +
                " tokens exceeds the cache (" + std::to_string(cache.capacity()) + " tokens)");
  const SequenceStep step{tokens, start_position, &cache.table(), logits};
  return forward(std::span<const SequenceStep>(&step, 1), cache.pool(), path);
}

std::vector<float> Model::forward(std::span<const SequenceStep> steps, KvPool& pool, Path path) const {
  const int64_t hidden = config_.hidden_size, num_layers = config_.num_hidden_layers,
                nkv = config_.num_key_value_heads, d = config_.head_dim;
  if (path == Path::Teacher && !has_teacher())
    throw Error("this model was loaded without the teacher q/k/v (load it with load_teacher)");
  if (path == Path::SwiftKV && !has_student())
    throw Error("this model was loaded without its SwiftKV weights (load it with load_student)");
  if (pool.num_caches() != num_caches(path)) throw Error("forward: the KV pool was made for another path");
  if (pool.num_kv_heads() != nkv || pool.head_dim() != d)
    throw Error("forward: the KV pool's heads (" + std::to_string(pool.num_kv_heads()) + " x " +
                std::to_string(pool.head_dim()) + ") are not this model's (" + std::to_string(nkv) + " x " +
                std::to_string(d) + ")");

  // Flatten the batch: every step's rows, and which of them continue past layer M.
  std::vector<int32_t> tokens, positions;
  std::vector<Segment> segments, kept_segments;
  std::vector<int64_t> kept_rows;
  for (const SequenceStep& step : steps) {
    const int64_t count = static_cast<int64_t>(step.tokens.size()), end = step.start_position + count;
    if (count == 0) throw Error("forward: a sequence step has no tokens");
    if (end > rope_->max_positions())
      throw Error("sequence of " + std::to_string(end) + " tokens exceeds the context (" +
                  std::to_string(rope_->max_positions()) + " tokens)");
    if (!step.block_table || static_cast<int64_t>(step.block_table->size()) * pool.block_size() < end)
      throw Error("forward: the block table does not cover position " + std::to_string(end - 1));
    const int64_t first_row = static_cast<int64_t>(tokens.size());
    segments.push_back({first_row, count, step.block_table});
    for (int64_t i = 0; i < count; ++i) {
      const int32_t token = step.tokens[static_cast<size_t>(i)];
      if (token < 0 || token >= config_.vocab_size)
        throw Error("token id " + std::to_string(token) + " is outside the vocabulary [0, " +
                    std::to_string(config_.vocab_size) + ")");
      tokens.push_back(token);
      positions.push_back(static_cast<int32_t>(step.start_position + i));
    }
    const int64_t kept = logits_rows(step.logits, count);
    if (kept > 0) kept_segments.push_back({static_cast<int64_t>(kept_rows.size()), kept, step.block_table});
    for (int64_t i = count - kept; i < count; ++i) kept_rows.push_back(first_row + i);
  }
  const int64_t rows = static_cast<int64_t>(tokens.size()), kept = static_cast<int64_t>(kept_rows.size());

  std::unique_ptr<Scratch> scratch = take_scratch();
  float* h = first(scratch->hidden, rows * hidden);
  embed(tokens, h);

  const int64_t early_layers = path == Path::Teacher ? num_layers : config_.num_key_value_layers;
  for (int64_t l = 0; l < early_layers; ++l) {
    const Layer& layer = layers_[static_cast<size_t>(l)];
    attention_block(layer, h, rows, positions.data(), segments, pool, l, /*write_kv=*/true, *scratch);
    mlp_block(layer, h, rows, *scratch);
  }

  if (early_layers < num_layers) {
    // SingleInputKV: every later group's K/V for every token from one GEMM on norm_swiftkv(h_M).
    const int64_t groups = (num_layers - early_layers) / config_.key_value_group_size, kv_width = nkv * d,
                  row_stride = groups * 2 * kv_width;
    float* normed = first(scratch->normed, rows * hidden);
    float* kv = first(scratch->swiftkv_kv, rows * row_stride);
    kernels::rmsnorm(h, norm_swiftkv_.data(), rows, hidden, static_cast<float>(config_.rms_norm_eps), normed);
    swiftkv_kv_->forward(normed, rows, kv);
    for (int64_t g = 0; g < groups; ++g) {
      float* k = kv + g * 2 * kv_width;
      kernels::apply_rope(k, rows, row_stride, nkv, positions.data(), *rope_);
      for (const Segment& segment : segments) {
        for (int64_t r = segment.first_row; r < segment.first_row + segment.rows; ++r) {
          const float* k_row = k + r * row_stride;
          pool.write(early_layers + g, *segment.block_table, positions[r], k_row, k_row + kv_width);
        }
      }
    }
  }
  if (kept == 0) {
    return_scratch(std::move(scratch));
    return {};
  }

  // Only the rows whose logits are wanted go on: gathered into their own buffer.
  float* kept_h = first(scratch->kept_hidden, kept * hidden);
  std::vector<int32_t> kept_positions(static_cast<size_t>(kept));
  for (int64_t i = 0; i < kept; ++i) {
    std::memcpy(kept_h + i * hidden, h + kept_rows[static_cast<size_t>(i)] * hidden,
                static_cast<size_t>(hidden) * sizeof(float));
    kept_positions[static_cast<size_t>(i)] =
        positions[static_cast<size_t>(kept_rows[static_cast<size_t>(i)])];
  }
  for (int64_t l = early_layers; l < num_layers; ++l) {
    const Layer& layer = layers_[static_cast<size_t>(l)];
    attention_block(layer, kept_h, kept, kept_positions.data(), kept_segments, pool,
                    config_.kv_cache_index(l),
                    /*write_kv=*/false, *scratch);
    mlp_block(layer, kept_h, kept, *scratch);
  }

  float* normed = first(scratch->normed, kept * hidden);
  kernels::rmsnorm(kept_h, final_norm_.data(), kept, hidden, static_cast<float>(config_.rms_norm_eps),
                   normed);
  std::vector<float> result(static_cast<size_t>(kept * config_.vocab_size));
  lm_head_->forward(normed, kept, result.data());
  return_scratch(std::move(scratch));
  return result;
}

}  // namespace swiftkv::model
