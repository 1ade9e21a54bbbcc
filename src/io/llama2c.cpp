#include "io/llama2c.h"

#include <cstring>
#include <vector>

#include "common/error.h"
#include "common/files.h"
#include "io/mapped_file.h"
#include "io/model_config.h"
#include "io/model_dir.h"
#include "io/safetensors.h"
#include "tokenizer/llama2c_tokenizer.h"

namespace swiftkv::io {
namespace {

// llama2.c "legacy" header: 7 little-endian int32.
struct Llama2cHeader {
  int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
};

// Where one HF tensor comes from in the .bin: `rows` x `cols` floats at `offset` (in floats).
// `rope_heads` > 0 marks wq/wk, whose rows are permuted per head to HF's rotate-half layout.
struct Source {
  TensorSpec spec;
  size_t offset;
  int64_t rows, cols;
  int64_t rope_heads = 0;
};

Llama2cHeader read_header(const MappedFile& file) {
  const std::string where = file.path().string();
  if (file.size() < sizeof(Llama2cHeader))
    throw Error(where + " is truncated: " + std::to_string(file.size()) +
                " bytes, a llama2.c checkpoint starts with a 28-byte header");
  Llama2cHeader h;
  std::memcpy(&h, file.data(), sizeof h);
  auto fail = [&](const std::string& problem) {
    throw Error(where + " is not a llama2.c checkpoint (header dim=" + std::to_string(h.dim) +
                " hidden_dim=" + std::to_string(h.hidden_dim) + " n_layers=" + std::to_string(h.n_layers) +
                " n_heads=" + std::to_string(h.n_heads) + " n_kv_heads=" + std::to_string(h.n_kv_heads) +
                " vocab_size=" + std::to_string(h.vocab_size) + " seq_len=" + std::to_string(h.seq_len) +
                "): " + problem);
  };
  if (h.dim <= 0 || h.hidden_dim <= 0 || h.n_layers <= 0 || h.n_heads <= 0 || h.n_kv_heads <= 0 ||
      h.vocab_size == 0 || h.vocab_size == INT32_MIN || h.seq_len <= 0)
    fail("sizes must be positive");
  // Bounds far above any real model keep the size arithmetic below within 64 bits.
  if (h.dim > (1 << 24) || h.hidden_dim > (1 << 24) || h.n_layers > (1 << 12) || h.seq_len > (1 << 24) ||
      h.vocab_size > (1 << 24) || h.vocab_size < -(1 << 24))
    fail("sizes are implausibly large");
  if (h.dim % h.n_heads != 0) fail("n_heads must divide dim");
  if (h.n_heads % h.n_kv_heads != 0) fail("n_kv_heads must divide n_heads");
  if ((h.dim / h.n_heads) % 2 != 0) fail("the head size dim / n_heads must be even");
  return h;
}

// The HF tensors in file order, with their places in the .bin; checks the file size exactly.
std::vector<Source> plan_tensors(const Llama2cHeader& h, const MappedFile& file) {
  const bool shared_classifier = h.vocab_size > 0;
  const int64_t vocab = shared_classifier ? h.vocab_size : -static_cast<int64_t>(h.vocab_size);
  const int64_t dim = h.dim, hidden = h.hidden_dim, layers = h.n_layers, head_dim = dim / h.n_heads;
  const int64_t q_rows = h.n_heads * head_dim, kv_rows = h.n_kv_heads * head_dim;

  // Offsets (in floats) of each array, in llama2.c's order. 128-bit so a garbage header
  // cannot overflow before the size check below rejects it.
  unsigned __int128 offset = 0;
  auto take = [&](int64_t count) {
    size_t at = static_cast<size_t>(offset);
    offset += static_cast<unsigned __int128>(count);
    return at;
  };
  size_t embedding = take(vocab * dim), rms_att = take(layers * dim), wq = take(layers * q_rows * dim),
         wk = take(layers * kv_rows * dim), wv = take(layers * kv_rows * dim),
         wo = take(layers * dim * q_rows), rms_ffn = take(layers * dim), w1 = take(layers * hidden * dim),
         w2 = take(layers * dim * hidden), w3 = take(layers * hidden * dim), rms_final = take(dim);
  // freq_cis_real and freq_cis_imag, [seq_len, hd/2] each: unused, RoPE is recomputed.
  take(static_cast<int64_t>(h.seq_len) * head_dim);
  size_t classifier = take(shared_classifier ? 0 : vocab * dim);
  const unsigned __int128 expected = sizeof(Llama2cHeader) + 4 * offset;
  if (expected != file.size())
    throw Error(
        file.path().string() + " has " + std::to_string(file.size()) + " bytes, but its header (dim " +
        std::to_string(dim) + ", " + std::to_string(layers) + " layers, vocab " + std::to_string(vocab) +
        (shared_classifier ? ", shared classifier" : ", separate classifier") + ") needs exactly " +
        std::to_string(static_cast<uint64_t>(expected)) + " bytes: the file is " +
        (expected > file.size() ? "truncated" : "longer than expected (not a legacy llama2.c checkpoint?)"));

  std::vector<Source> plan;
  auto add = [&](const std::string& name, size_t at, int64_t rows, int64_t cols, int64_t rope_heads = 0) {
    std::vector<int64_t> shape = rows == 1 ? std::vector<int64_t>{cols} : std::vector<int64_t>{rows, cols};
    plan.push_back({{name, DType::F32, shape}, at, rows, cols, rope_heads});
  };
  add("model.embed_tokens.weight", embedding, vocab, dim);
  for (int64_t l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const size_t L = static_cast<size_t>(l);
    add(p + "input_layernorm.weight", rms_att + L * dim, 1, dim);
    add(p + "self_attn.q_proj.weight", wq + L * q_rows * dim, q_rows, dim, h.n_heads);
    add(p + "self_attn.k_proj.weight", wk + L * kv_rows * dim, kv_rows, dim, h.n_kv_heads);
    add(p + "self_attn.v_proj.weight", wv + L * kv_rows * dim, kv_rows, dim);
    add(p + "self_attn.o_proj.weight", wo + L * dim * q_rows, dim, q_rows);
    add(p + "post_attention_layernorm.weight", rms_ffn + L * dim, 1, dim);
    add(p + "mlp.gate_proj.weight", w1 + L * hidden * dim, hidden, dim);
    add(p + "mlp.up_proj.weight", w3 + L * hidden * dim, hidden, dim);
    add(p + "mlp.down_proj.weight", w2 + L * dim * hidden, dim, hidden);
  }
  add("model.norm.weight", rms_final, 1, dim);
  if (!shared_classifier) add("lm_head.weight", classifier, vocab, dim);
  return plan;
}

ModelConfig config_for(const Llama2cHeader& h) {
  ModelConfig c;
  c.model_type = "llama";
  c.vocab_size = h.vocab_size > 0 ? h.vocab_size : -static_cast<int64_t>(h.vocab_size);
  c.hidden_size = h.dim;
  c.intermediate_size = h.hidden_dim;
  c.num_hidden_layers = c.num_key_value_layers = h.n_layers;
  c.num_attention_heads = h.n_heads;
  c.num_key_value_heads = h.n_kv_heads;
  c.head_dim = h.dim / h.n_heads;
  c.rms_norm_eps = 1e-5;  // llama2.c's hard-coded value
  c.rope_theta = 10000.0;
  c.tie_word_embeddings = h.vocab_size > 0;
  c.max_position_embeddings = h.seq_len;
  c.bos_token_id = 1;
  // llama2.c models end a story by emitting BOS, and llama2.c stops there.
  c.eos_token_ids = {2, 1};
  return c;
}

}  // namespace

void import_llama2c(const std::filesystem::path& model_bin, const std::filesystem::path& tokenizer_bin,
                    const std::filesystem::path& out_dir) {
  MappedFile file(model_bin);
  const Llama2cHeader header = read_header(file);
  const std::vector<Source> plan = plan_tensors(header, file);
  const ModelConfig config = config_for(header);
  // Convert the tokenizer before writing anything: a bad tok.bin then leaves no directory.
  tokenizer::HfTokenizerFiles tokenizer_files = tokenizer::convert_llama2c_tokenizer(tokenizer_bin);
  // llama2.c's header stores the vocabulary size and its tok.bin does not: a tokenizer of
  // another model would give ids past the embedding (or never use its last rows).
  const size_t tokenizer_vocab = tokenizer_files.tokenizer_json["model"]["vocab"].size();
  if (static_cast<int64_t>(tokenizer_vocab) != config.vocab_size)
    throw Error(tokenizer_bin.string() + " has " + std::to_string(tokenizer_vocab) + " tokens but " +
                model_bin.string() + " has vocab_size " + std::to_string(config.vocab_size) +
                ": pass the tokenizer the model was trained with");

  write_model_directory(out_dir, [&](const std::filesystem::path& dir) {
    nlohmann::json config_json = model_config_to_json(config);
    config_json["torch_dtype"] = "float32";
    write_json_file(dir / "config.json", config_json);
    write_json_file(dir / "generation_config.json", {{"bos_token_id", 1}, {"eos_token_id", {2, 1}}});
    write_json_file(dir / "tokenizer.json", tokenizer_files.tokenizer_json);
    write_json_file(dir / "tokenizer_config.json", tokenizer_files.tokenizer_config_json);

    std::vector<TensorSpec> specs;
    for (const Source& source : plan) specs.push_back(source.spec);
    const float* floats = reinterpret_cast<const float*>(file.data() + sizeof(Llama2cHeader));
    write_safetensors_streaming(dir / "model.safetensors", specs, [&](size_t index, const EmitBytes& emit) {
      const Source& source = plan[index];
      const float* tensor = floats + source.offset;
      const size_t row_bytes = static_cast<size_t>(source.cols) * sizeof(float);
      if (source.rope_heads == 0) {
        emit(tensor, static_cast<size_t>(source.rows) * row_bytes);
        return;
      }
      // HF row h*hd + c*hd/2 + i = llama2.c row h*hd + 2*i + c (adjacent pairs -> rotate-half).
      const int64_t head_dim = source.rows / source.rope_heads;
      std::vector<float> permuted(static_cast<size_t>(source.rows * source.cols));
      for (int64_t head = 0; head < source.rope_heads; ++head)
        for (int64_t c = 0; c < 2; ++c)
          for (int64_t i = 0; i < head_dim / 2; ++i)
            std::memcpy(permuted.data() + (head * head_dim + c * head_dim / 2 + i) * source.cols,
                        tensor + (head * head_dim + 2 * i + c) * source.cols, row_bytes);
      emit(permuted.data(), permuted.size() * sizeof(float));
    });
  });
}

}  // namespace swiftkv::io
