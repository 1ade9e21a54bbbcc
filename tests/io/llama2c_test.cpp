#include "io/llama2c.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "common/files.h"
#include "io/checkpoint.h"
#include "io/model_config.h"
#include "io_test_util.h"
#include "test_paths.h"
#include "tokenizer/tokenizer.h"

namespace swiftkv::io {
namespace {

using testing::expect_error;

std::filesystem::path stories_dir() { return swiftkv::testing::shared_dir() / "data" / "stories260K"; }

// The .bin read independently of the importer: header + all floats.
struct Bin {
  int32_t dim, hidden, layers, heads, kv_heads, vocab, seq_len;
  std::vector<float> floats;
};

Bin read_bin(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::string bytes(std::istreambuf_iterator<char>(in), {});
  Bin bin;
  std::memcpy(&bin.dim, bytes.data(), 28);
  bin.floats.resize((bytes.size() - 28) / 4);
  std::memcpy(bin.floats.data(), bytes.data() + 28, bin.floats.size() * 4);
  return bin;
}

// Rows [first, first + count) of the matrix starting at float `offset` with `cols` columns.
std::vector<float> slice(const Bin& bin, size_t offset, size_t count) {
  return std::vector<float>(bin.floats.begin() + offset, bin.floats.begin() + offset + count);
}

TEST(Llama2c, ImportsStories260K) {
  auto parent = swiftkv::testing::fresh_temp_dir("io_llama2c");
  auto out = parent / "stories260K";
  import_llama2c(stories_dir() / "stories260K.bin", stories_dir() / "tok512.bin", out);
  // Only the finished directory is left: no staging directory beside it.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(parent), {}), 1);

  ModelConfig config = load_model_config(out);
  EXPECT_EQ(config.model_type, "llama");
  EXPECT_EQ(config.hidden_size, 64);
  EXPECT_EQ(config.intermediate_size, 172);
  EXPECT_EQ(config.num_hidden_layers, 5);
  EXPECT_EQ(config.num_attention_heads, 8);
  EXPECT_EQ(config.num_key_value_heads, 4);
  EXPECT_EQ(config.head_dim, 8);
  EXPECT_EQ(config.vocab_size, 512);
  EXPECT_EQ(config.max_position_embeddings, 512);
  EXPECT_DOUBLE_EQ(config.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(config.rope_theta, 10000.0);
  EXPECT_EQ(config.rope_scaling.type, "none");
  EXPECT_TRUE(config.tie_word_embeddings);
  EXPECT_EQ(config.bos_token_id, 1);
  EXPECT_EQ(config.eos_token_ids, (std::vector<int>{2, 1}));
  EXPECT_FALSE(config.swiftkv());
  auto generation = read_json_file(out / "generation_config.json");
  EXPECT_EQ(generation["eos_token_id"], nlohmann::json({2, 1}));
  EXPECT_EQ(generation["bos_token_id"], 1);
  EXPECT_TRUE(read_json_file(out / "tokenizer.json").contains("model"));
  EXPECT_TRUE(read_json_file(out / "tokenizer_config.json").is_object());
  tokenizer::Tokenizer tokenizer = tokenizer::Tokenizer::from_dir(out);
  EXPECT_EQ(tokenizer.vocab_size(), 512);
  EXPECT_EQ(tokenizer.decode(tokenizer.encode("Once upon a time"), true), "Once upon a time");

  TensorStore store = TensorStore::open(out);
  EXPECT_NO_THROW(validate_checkpoint(config, store));
  EXPECT_EQ(store.names().size(), 1 + 5 * 9 + 1u);
  for (const std::string& name : store.names()) EXPECT_EQ(store.at(name).dtype, DType::F32) << name;

  // Offsets of llama2.c's arrays (in floats), derived here from the README's layout.
  Bin bin = read_bin(stories_dir() / "stories260K.bin");
  const size_t D = 64, F = 172, L = 5, V = 512, hd = 8, q = 64, kv = 32;
  const size_t embedding = 0, rms_att = V * D, wq = rms_att + L * D, wk = wq + L * q * D,
               wv = wk + L * kv * D, wo = wv + L * kv * D, rms_ffn = wo + L * D * q, w1 = rms_ffn + L * D,
               w2 = w1 + L * F * D, w3 = w2 + L * D * F, rms_final = w3 + L * F * D;
  EXPECT_EQ(bin.floats.size(), rms_final + D + 512 * hd);  // + freq_cis real and imag

  EXPECT_EQ(store.read_f32("model.embed_tokens.weight"), slice(bin, embedding, V * D));
  EXPECT_EQ(store.read_f32("model.layers.2.input_layernorm.weight"), slice(bin, rms_att + 2 * D, D));
  EXPECT_EQ(store.read_f32("model.layers.4.self_attn.v_proj.weight"), slice(bin, wv + 4 * kv * D, kv * D));
  EXPECT_EQ(store.read_f32("model.layers.1.self_attn.o_proj.weight"), slice(bin, wo + 1 * D * q, D * q));
  EXPECT_EQ(store.read_f32("model.layers.3.post_attention_layernorm.weight"), slice(bin, rms_ffn + 3 * D, D));
  EXPECT_EQ(store.read_f32("model.layers.0.mlp.gate_proj.weight"), slice(bin, w1, F * D));
  EXPECT_EQ(store.read_f32("model.layers.0.mlp.down_proj.weight"), slice(bin, w2, D * F));
  EXPECT_EQ(store.read_f32("model.layers.0.mlp.up_proj.weight"), slice(bin, w3, F * D));
  EXPECT_EQ(store.read_f32("model.norm.weight"), slice(bin, rms_final, D));

  // RoPE permutation, on head 3 of layer 1's wq and head 1 of layer 4's wk:
  // HF row head*hd + c*hd/2 + i = llama2.c row head*hd + 2*i + c.
  std::vector<float> hf_q = store.read_f32("model.layers.1.self_attn.q_proj.weight");
  std::vector<float> hf_k = store.read_f32("model.layers.4.self_attn.k_proj.weight");
  for (size_t c = 0; c < 2; ++c) {
    for (size_t i = 0; i < hd / 2; ++i) {
      for (size_t col = 0; col < D; ++col) {
        size_t head = 3, hf_row = head * hd + c * hd / 2 + i, llama2c_row = head * hd + 2 * i + c;
        ASSERT_EQ(hf_q[hf_row * D + col], bin.floats[wq + 1 * q * D + llama2c_row * D + col])
            << c << " " << i;
        head = 1, hf_row = head * hd + c * hd / 2 + i, llama2c_row = head * hd + 2 * i + c;
        ASSERT_EQ(hf_k[hf_row * D + col], bin.floats[wk + 4 * kv * D + llama2c_row * D + col])
            << c << " " << i;
      }
    }
  }
  // ... and it really is a permutation (not a copy): row 1 of HF head 0 is llama2.c row 2.
  EXPECT_NE(std::vector<float>(hf_q.begin() + D, hf_q.begin() + 2 * D), slice(bin, wq + 1 * q * D + D, D));
}

// A tiny untied llama2.c checkpoint (negative vocab_size, wcls at the end), written here.
void write_untied_bin(const std::filesystem::path& path, size_t drop_bytes = 0) {
  const int32_t dim = 8, hidden = 12, layers = 2, heads = 2, kv_heads = 1, vocab = 512, seq_len = 4;
  const int32_t header[7] = {dim, hidden, layers, heads, kv_heads, -vocab, seq_len};
  const size_t hd = dim / heads, kv = kv_heads * hd;
  size_t count = vocab * dim + layers * dim + layers * dim * dim + 2 * layers * kv * dim +
                 layers * dim * dim + layers * dim + 3 * layers * hidden * dim + dim + seq_len * hd +
                 vocab * dim;
  std::vector<float> floats(count);
  for (size_t i = 0; i < count; ++i) floats[i] = static_cast<float>(i);
  std::string bytes(reinterpret_cast<const char*>(header), 28);
  bytes.append(reinterpret_cast<const char*>(floats.data()), count * 4);
  std::ofstream(path, std::ios::binary) << bytes.substr(0, bytes.size() - drop_bytes);
}

TEST(Llama2c, UntiedClassifierBecomesLmHead) {
  auto dir = swiftkv::testing::fresh_temp_dir("io_llama2c_untied");
  write_untied_bin(dir / "untied.bin");
  import_llama2c(dir / "untied.bin", stories_dir() / "tok512.bin", dir / "out");
  ModelConfig config = load_model_config(dir / "out");
  EXPECT_FALSE(config.tie_word_embeddings);
  EXPECT_EQ(config.vocab_size, 512);
  TensorStore store = TensorStore::open(dir / "out");
  EXPECT_NO_THROW(validate_checkpoint(config, store));
  std::vector<float> lm_head = store.read_f32("lm_head.weight");
  ASSERT_EQ(lm_head.size(), 512 * 8u);
  const size_t total = std::filesystem::file_size(dir / "untied.bin") / 4 - 7;
  EXPECT_EQ(lm_head.front(), static_cast<float>(total - 512 * 8));  // wcls is the last array
  EXPECT_EQ(lm_head.back(), static_cast<float>(total - 1));
}

TEST(Llama2c, TruncatedOrWrongFilesAreRefusedAndLeaveNothing) {
  auto dir = swiftkv::testing::fresh_temp_dir("io_llama2c_bad");
  write_untied_bin(dir / "cut.bin", 6);
  expect_error([&] { import_llama2c(dir / "cut.bin", stories_dir() / "tok512.bin", dir / "out"); },
               {(dir / "cut.bin").string(), "needs exactly", "the file is truncated"});
  EXPECT_FALSE(std::filesystem::exists(dir / "out"));

  std::ofstream(dir / "short.bin", std::ios::binary) << "abc";
  expect_error([&] { import_llama2c(dir / "short.bin", stories_dir() / "tok512.bin", dir / "out"); },
               {(dir / "short.bin").string(), "is truncated: 3 bytes"});

  const int32_t bad_header[7] = {64, 172, 5, 7, 4, 512, 512};  // 7 heads do not divide 64
  std::ofstream(dir / "heads.bin", std::ios::binary).write(reinterpret_cast<const char*>(bad_header), 28);
  expect_error([&] { import_llama2c(dir / "heads.bin", stories_dir() / "tok512.bin", dir / "out"); },
               {"is not a llama2.c checkpoint", "n_heads must divide dim"});

  expect_error([&] { import_llama2c(dir / "missing.bin", stories_dir() / "tok512.bin", dir / "out"); },
               {"cannot open", "missing.bin"});
  EXPECT_FALSE(std::filesystem::exists(dir / "out"));

  // A tokenizer of another size than the model's vocabulary: tok512.bin's first 300 tokens.
  std::ifstream tok512(stories_dir() / "tok512.bin", std::ios::binary);
  std::string tok_bytes(std::istreambuf_iterator<char>(tok512), {});
  size_t end = 4;
  for (int token = 0; token < 300; ++token) {
    int32_t length;
    std::memcpy(&length, tok_bytes.data() + end + 4, 4);
    end += 8 + static_cast<size_t>(length);
  }
  std::ofstream(dir / "tok300.bin", std::ios::binary) << tok_bytes.substr(0, end);
  expect_error([&] { import_llama2c(stories_dir() / "stories260K.bin", dir / "tok300.bin", dir / "out"); },
               {"tok300.bin has 300 tokens", "stories260K.bin has vocab_size 512"});
  EXPECT_FALSE(std::filesystem::exists(dir / "out"));

  // An existing non-empty output directory is never overwritten.
  std::filesystem::create_directories(dir / "taken");
  std::ofstream(dir / "taken" / "keep.txt") << "mine";
  expect_error(
      [&] { import_llama2c(stories_dir() / "stories260K.bin", stories_dir() / "tok512.bin", dir / "taken"); },
      {"already exists and is not an empty directory"});
  EXPECT_TRUE(std::filesystem::exists(dir / "taken" / "keep.txt"));
}

}  // namespace
}  // namespace swiftkv::io
