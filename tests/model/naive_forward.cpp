#include "naive_forward.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>

#include "common/error.h"
#include "io/safetensors.h"

namespace swiftkv::testing {

namespace {

using Vector = std::vector<double>;

// y = W x + b with W [out, in] row-major, like torch.nn.Linear.
struct Linear {
  int64_t out = 0, in = 0;
  Vector weight;  // [out * in]
  Vector bias;    // [out], or empty
  bool loaded() const { return !weight.empty(); }

  Vector apply(const Vector& x) const {
    Vector y(static_cast<size_t>(out), 0.0);
    for (int64_t o = 0; o < out; ++o) {
      const double* row = weight.data() + o * in;
      double sum = bias.empty() ? 0.0 : bias[static_cast<size_t>(o)];
      for (int64_t i = 0; i < in; ++i) sum += row[i] * x[static_cast<size_t>(i)];
      y[static_cast<size_t>(o)] = sum;
    }
    return y;
  }
};

Vector load(const io::TensorStore& store, const std::string& name, const std::vector<int64_t>& shape) {
  if (!store.contains(name)) throw Error("naive reference: the checkpoint has no tensor " + name);
  const auto& info = store.at(name);
  if (info.shape != shape) {
    throw Error("naive reference: tensor " + name + " has shape " + io::shape_string(info.shape) +
                ", the config implies " + io::shape_string(shape));
  }
  const std::vector<float> values = store.read_f32(name);
  return Vector(values.begin(), values.end());
}

Linear load_linear(const io::TensorStore& store, const std::string& prefix, int64_t out, int64_t in,
                   bool bias) {
  Linear linear;
  linear.out = out;
  linear.in = in;
  linear.weight = load(store, prefix + ".weight", {out, in});
  if (bias) linear.bias = load(store, prefix + ".bias", {out});
  return linear;
}

// HF LlamaRMSNorm: x / sqrt(mean(x^2) + eps) * w.
Vector rmsnorm(const Vector& x, const Vector& weight, double eps) {
  double sum_squares = 0.0;
  for (double value : x) sum_squares += value * value;
  const double scale = 1.0 / std::sqrt(sum_squares / static_cast<double>(x.size()) + eps);
  Vector y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * scale * weight[i];
  return y;
}

double silu(double x) { return x / (1.0 + std::exp(-x)); }

// HF apply_rotary_pos_emb with rotate_half: inside each head, element i pairs with i + d/2:
// out_i = x_i cos - x_{i+d/2} sin, out_{i+d/2} = x_{i+d/2} cos + x_i sin, angle = pos * inv_freq_i.
void apply_rope(Vector& x, int64_t heads, int64_t head_dim, int64_t position,
                const Vector& inverse_frequencies) {
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < heads; ++h) {
    double* head = x.data() + h * head_dim;
    for (int64_t i = 0; i < half; ++i) {
      const double angle = static_cast<double>(position) * inverse_frequencies[static_cast<size_t>(i)];
      const double c = std::cos(angle), s = std::sin(angle);
      const double x1 = head[i], x2 = head[i + half];
      head[i] = x1 * c - x2 * s;
      head[i + half] = x2 * c + x1 * s;
    }
  }
}

}  // namespace

std::vector<double> rope_inverse_frequencies(const io::ModelConfig& config) {
  const int64_t d = config.head_dim;
  Vector inverse_frequencies(static_cast<size_t>(d / 2));
  for (int64_t i = 0; i < d / 2; ++i) {
    inverse_frequencies[static_cast<size_t>(i)] =
        std::pow(config.rope_theta, -static_cast<double>(2 * i) / static_cast<double>(d));
  }
  const auto& scaling = config.rope_scaling;
  if (scaling.type == "none" || scaling.type == "default") return inverse_frequencies;
  if (scaling.type == "linear") {
    // transformers divides positions by the factor; dividing the frequencies is the same angle.
    for (double& f : inverse_frequencies) f /= scaling.factor;
    return inverse_frequencies;
  }
  if (scaling.type == "llama3") {
    // transformers' _compute_llama3_parameters, term by term.
    const double old_context = static_cast<double>(scaling.original_max_position_embeddings);
    const double low_freq_wavelen = old_context / scaling.low_freq_factor;
    const double high_freq_wavelen = old_context / scaling.high_freq_factor;
    for (double& f : inverse_frequencies) {
      const double wavelen = 2.0 * std::numbers::pi / f;
      // Long wavelengths (low frequencies) are scaled fully; short ones are left alone.
      double scaled = wavelen > low_freq_wavelen ? f / scaling.factor : f;
      const bool medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
      if (medium) {
        const double smooth = (old_context / wavelen - scaling.low_freq_factor) /
                              (scaling.high_freq_factor - scaling.low_freq_factor);
        scaled = (1.0 - smooth) * scaled / scaling.factor + smooth * scaled;
      }
      f = scaled;
    }
    return inverse_frequencies;
  }
  throw Error("naive reference: unsupported rope_scaling type '" + scaling.type + "'");
}

struct NaiveLayer {
  Vector input_layernorm, post_attention_layernorm;
  Linear q, k, v;                          // the teacher's (absent for layers >= M if not stored)
  Linear q_swiftkv, k_swiftkv, v_swiftkv;  // layers >= M; k/v only on group leaders
  Linear o, gate, up, down;
};

struct NaiveModel::Weights {
  io::ModelConfig config;
  Vector embed_tokens;  // [V * H]
  Vector lm_head;       // [V * H] (a copy of embed_tokens when tied)
  Vector norm, norm_swiftkv;
  std::vector<NaiveLayer> layers;
  Vector inverse_frequencies;
  bool has_teacher = true;
};

NaiveModel::NaiveModel(const std::filesystem::path& dir) : weights_(std::make_unique<Weights>()) {
  Weights& w = *weights_;
  w.config = io::load_model_config(dir);
  const io::ModelConfig& c = w.config;
  const int64_t L = c.num_hidden_layers, M = c.num_key_value_layers, G = c.key_value_group_size;
  const int64_t H = c.hidden_size, V = c.vocab_size, F = c.intermediate_size;
  const int64_t nq = c.num_attention_heads, nkv = c.num_key_value_heads, d = c.head_dim;
  if (nkv <= 0 || nq % nkv != 0 || d % 2 != 0 || M < 1 || M > L || G < 1 || (L - M) % G != 0) {
    throw Error("naive reference: inconsistent config in " + dir.string());
  }
  const io::TensorStore store = io::TensorStore::open(dir);
  const bool bias = c.attention_bias;
  // HF Llama puts attention_bias on o_proj too; Qwen2 never has an o_proj bias.
  const bool llama_family = c.model_type.rfind("llama", 0) == 0;

  w.embed_tokens = load(store, "model.embed_tokens.weight", {V, H});
  w.lm_head = c.tie_word_embeddings ? w.embed_tokens : load(store, "lm_head.weight", {V, H});
  w.norm = load(store, "model.norm.weight", {H});
  if (M < L) w.norm_swiftkv = load(store, "model.norm_swiftkv.weight", {H});

  // Teacher q/k/v of layers >= M are optional: Teacher mode needs all of them.
  for (int64_t l = M; l < L; ++l) {
    if (!store.contains("model.layers." + std::to_string(l) + ".self_attn.q_proj.weight"))
      w.has_teacher = false;
  }

  w.layers.resize(static_cast<size_t>(L));
  for (int64_t l = 0; l < L; ++l) {
    NaiveLayer& layer = w.layers[static_cast<size_t>(l)];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    layer.input_layernorm = load(store, p + "input_layernorm.weight", {H});
    layer.post_attention_layernorm = load(store, p + "post_attention_layernorm.weight", {H});
    if (l < M || w.has_teacher) {
      layer.q = load_linear(store, p + "self_attn.q_proj", nq * d, H, bias);
      layer.k = load_linear(store, p + "self_attn.k_proj", nkv * d, H, bias);
      layer.v = load_linear(store, p + "self_attn.v_proj", nkv * d, H, bias);
    }
    if (l >= M) {
      layer.q_swiftkv = load_linear(store, p + "self_attn.q_proj_swiftkv", nq * d, H, bias);
      if ((l - M) % G == 0) {
        layer.k_swiftkv = load_linear(store, p + "self_attn.k_proj_swiftkv", nkv * d, H, bias);
        layer.v_swiftkv = load_linear(store, p + "self_attn.v_proj_swiftkv", nkv * d, H, bias);
      }
    }
    layer.o = load_linear(store, p + "self_attn.o_proj", H, nq * d,
                          bias && llama_family && store.contains(p + "self_attn.o_proj.bias"));
    layer.gate = load_linear(store, p + "mlp.gate_proj", F, H, false);
    layer.up = load_linear(store, p + "mlp.up_proj", F, H, false);
    layer.down = load_linear(store, p + "mlp.down_proj", H, F, false);
  }
  w.inverse_frequencies = rope_inverse_frequencies(c);
}

NaiveModel::~NaiveModel() = default;
NaiveModel::NaiveModel(NaiveModel&&) noexcept = default;
NaiveModel& NaiveModel::operator=(NaiveModel&&) noexcept = default;

const io::ModelConfig& NaiveModel::config() const { return weights_->config; }
bool NaiveModel::has_teacher() const { return weights_->has_teacher; }

std::vector<std::vector<double>> NaiveModel::forward(const std::vector<int32_t>& tokens,
                                                     ForwardMode mode) const {
  return trace(tokens, mode).logits;
}

NaiveTrace NaiveModel::trace(const std::vector<int32_t>& tokens, ForwardMode mode) const {
  const Weights& w = *weights_;
  const io::ModelConfig& c = w.config;
  const int64_t L = c.num_hidden_layers, M = c.num_key_value_layers, G = c.key_value_group_size;
  const int64_t H = c.hidden_size, V = c.vocab_size;
  const int64_t nq = c.num_attention_heads, nkv = c.num_key_value_heads, d = c.head_dim;
  const int64_t queries_per_kv = nq / nkv;
  const size_t T = tokens.size();
  if (mode == ForwardMode::Teacher && !w.has_teacher) {
    throw Error("naive reference: Teacher mode needs the teacher's q/k/v projections of layers >= " +
                std::to_string(M) + ", which the checkpoint does not have");
  }

  NaiveTrace trace;
  std::vector<Vector> h(T);
  for (size_t t = 0; t < T; ++t) {
    const int32_t id = tokens[t];
    if (id < 0 || id >= V)
      throw Error("naive reference: token id " + std::to_string(id) + " outside the vocabulary");
    h[t].assign(w.embed_tokens.begin() + id * H, w.embed_tokens.begin() + (id + 1) * H);
  }

  std::vector<Vector> single_input(T);  // s = rmsnorm(h_M; norm_swiftkv), SwiftKV mode only
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  for (int64_t l = 0; l < L; ++l) {
    const NaiveLayer& layer = w.layers[static_cast<size_t>(l)];
    trace.hidden.push_back(h);
    const bool student = mode == ForwardMode::SwiftKV && l >= M;
    if (student && l == M) {
      for (size_t t = 0; t < T; ++t) single_input[t] = rmsnorm(h[t], w.norm_swiftkv, c.rms_norm_eps);
    }
    // AcrossKV: every layer of a group reads the K/V of its leader g(l) = M + G floor((l-M)/G).
    const NaiveLayer& leader = student ? w.layers[static_cast<size_t>(M + G * ((l - M) / G))] : layer;

    std::vector<Vector> q(T), k(T), v(T);
    for (size_t t = 0; t < T; ++t) {
      const Vector a = rmsnorm(h[t], layer.input_layernorm, c.rms_norm_eps);
      if (student) {
        q[t] = layer.q_swiftkv.apply(a);
        k[t] = leader.k_swiftkv.apply(single_input[t]);
        v[t] = leader.v_swiftkv.apply(single_input[t]);
      } else {
        q[t] = layer.q.apply(a);
        k[t] = layer.k.apply(a);
        v[t] = layer.v.apply(a);
      }
      apply_rope(q[t], nq, d, static_cast<int64_t>(t), w.inverse_frequencies);
      apply_rope(k[t], nkv, d, static_cast<int64_t>(t), w.inverse_frequencies);
    }

    // Causal GQA: query head hq reads KV head hq / (nq / nkv).
    for (size_t t = 0; t < T; ++t) {
      Vector attention(static_cast<size_t>(nq * d), 0.0);
      for (int64_t hq = 0; hq < nq; ++hq) {
        const int64_t hk = hq / queries_per_kv;
        const double* query = q[t].data() + hq * d;
        Vector scores(t + 1);
        double max_score = -INFINITY;
        for (size_t u = 0; u <= t; ++u) {
          const double* key = k[u].data() + hk * d;
          double dot = 0.0;
          for (int64_t i = 0; i < d; ++i) dot += query[i] * key[i];
          scores[u] = dot * scale;
          max_score = std::max(max_score, scores[u]);
        }
        double total = 0.0;
        for (double& s : scores) total += (s = std::exp(s - max_score));
        double* out = attention.data() + hq * d;
        for (size_t u = 0; u <= t; ++u) {
          const double p = scores[u] / total;
          const double* value = v[u].data() + hk * d;
          for (int64_t i = 0; i < d; ++i) out[i] += p * value[i];
        }
      }
      const Vector projected = layer.o.apply(attention);
      for (int64_t i = 0; i < H; ++i) h[t][static_cast<size_t>(i)] += projected[static_cast<size_t>(i)];

      // SwiGLU MLP: down(silu(gate b) * up b).
      const Vector b = rmsnorm(h[t], layer.post_attention_layernorm, c.rms_norm_eps);
      Vector gate = layer.gate.apply(b);
      const Vector up = layer.up.apply(b);
      for (size_t i = 0; i < gate.size(); ++i) gate[i] = silu(gate[i]) * up[i];
      const Vector mlp = layer.down.apply(gate);
      for (int64_t i = 0; i < H; ++i) h[t][static_cast<size_t>(i)] += mlp[static_cast<size_t>(i)];
    }
    trace.keys.push_back(std::move(k));
    trace.values.push_back(std::move(v));
  }
  trace.hidden.push_back(h);

  trace.logits.resize(T);
  for (size_t t = 0; t < T; ++t) {
    const Vector x = rmsnorm(h[t], w.norm, c.rms_norm_eps);
    Vector& logits = trace.logits[t];
    logits.assign(static_cast<size_t>(V), 0.0);
    for (int64_t o = 0; o < V; ++o) {
      const double* row = w.lm_head.data() + o * H;
      double sum = 0.0;
      for (int64_t i = 0; i < H; ++i) sum += row[i] * x[static_cast<size_t>(i)];
      logits[static_cast<size_t>(o)] = sum;
    }
  }
  return trace;
}

}  // namespace swiftkv::testing
