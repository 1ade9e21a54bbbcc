#include "tokenizer/llama2c_tokenizer.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/error.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace swiftkv::tokenizer {
namespace {

// SentencePiece's word-boundary marker; llama2.c's export turned it back into ' '.
constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581 "▁"

struct Piece {
  std::string text;
  float score;
};

std::vector<Piece> read_tok_bin(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open llama2.c tokenizer " + path.string());
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t offset = 0;
  auto read_i32 = [&](const char* what) {
    if (bytes.size() - offset < 4)
      throw Error(path.string() + " is truncated: expected " + what + " at byte " + std::to_string(offset));
    int32_t value;
    std::memcpy(&value, bytes.data() + offset, 4);
    offset += 4;
    return value;
  };
  int32_t max_token_length = read_i32("max_token_length");
  if (max_token_length <= 0 || max_token_length > 4096)
    throw Error(path.string() + " is not a llama2.c tokenizer: max_token_length is " +
                std::to_string(max_token_length));
  // The file does not store the vocabulary size (the model header does): read to EOF.
  std::vector<Piece> pieces;
  while (offset < bytes.size()) {
    std::string id = std::to_string(pieces.size());
    int32_t score_bits = read_i32(("score of token " + id).c_str());
    float score;
    std::memcpy(&score, &score_bits, 4);
    int32_t length = read_i32(("length of token " + id).c_str());
    if (length < 0 || length > max_token_length + 16 || bytes.size() - offset < static_cast<size_t>(length))
      throw Error(path.string() + ": token " + id + " has length " + std::to_string(length) + " at byte " +
                  std::to_string(offset - 4) + " (file is " + std::to_string(bytes.size()) + " bytes)");
    pieces.push_back({bytes.substr(offset, length), score});
    offset += length;
  }
  if (pieces.size() < 3 + 256)
    throw Error(path.string() + " has " + std::to_string(pieces.size()) +
                " tokens; a llama2.c tokenizer has <unk>, <s>, </s> and 256 byte tokens first");
  return pieces;
}

bool is_byte_token(std::string_view piece) {
  return piece.size() == 6 && piece.substr(0, 3) == "<0x" && piece[5] == '>' &&
         std::isxdigit(static_cast<unsigned char>(piece[3])) &&
         std::isxdigit(static_cast<unsigned char>(piece[4]));
}

std::string replace_spaces(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == ' ')
      out += kSpaceMarker;
    else
      out += c;
  }
  return out;
}

nlohmann::json added_token(int id, const std::string& content) {
  return {{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
          {"rstrip", false}, {"normalized", false}, {"special", true}};
}

}  // namespace

HfTokenizerFiles convert_llama2c_tokenizer(const std::filesystem::path& tokenizer_bin) {
  std::vector<Piece> pieces = read_tok_bin(tokenizer_bin);
  // llama2.c hard-codes these three ids; its file stores BOS/EOS as "\n<s>\n" / "\n</s>\n".
  const std::string special[3] = {"<unk>", "<s>", "</s>"};

  std::vector<std::string> vocab(pieces.size());
  nlohmann::json vocab_json = nlohmann::json::object();
  std::unordered_map<std::string, int> id_of;
  for (size_t id = 0; id < pieces.size(); ++id) {
    std::string piece = id < 3 ? special[id] : replace_spaces(pieces[id].text);
    if (size_t bad = find_invalid_utf8(piece); bad != std::string::npos)
      throw Error(tokenizer_bin.string() + ": token " + std::to_string(id) + " is not valid UTF-8 (byte " +
                  std::to_string(bad) + ")");
    if (!id_of.emplace(piece, static_cast<int>(id)).second)
      throw Error(tokenizer_bin.string() + ": token " + std::to_string(id) + " \"" + piece +
                  "\" repeats token " + std::to_string(id_of[piece]));
    vocab_json[piece] = id;
    vocab[id] = std::move(piece);
  }

  // SentencePiece BPE merges ANY adjacent pair whose concatenation is a piece, best score
  // first. HF's BPE needs explicit merges, so list every split of every normal piece into two
  // pieces (at character boundaries, as HF's symbols are characters) and rank them by the
  // merged piece's score, highest first — the same list HF's SentencePieceExtractor makes.
  struct Merge {
    float score;
    int merged_id;
    int left_id;
    int right_id;
  };
  std::vector<Merge> merges;
  for (size_t id = 3; id < vocab.size(); ++id) {
    const std::string& piece = vocab[id];
    if (is_byte_token(piece)) continue;
    for (size_t split = utf8_sequence_length(piece[0]); split < piece.size();
         split += utf8_sequence_length(piece[split])) {
      auto left = id_of.find(piece.substr(0, split));
      auto right = id_of.find(piece.substr(split));
      if (left == id_of.end() || right == id_of.end() || left->second < 3 || right->second < 3) continue;
      merges.push_back({pieces[id].score, static_cast<int>(id), left->second, right->second});
    }
  }
  // Ties (several splits of one piece) keep the piece's id order, then the left piece's id:
  // deterministic, and equal-score merges of different pieces stay in vocabulary order.
  std::stable_sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.merged_id != b.merged_id) return a.merged_id < b.merged_id;
    return a.left_id < b.left_id;
  });
  nlohmann::json merges_json = nlohmann::json::array();
  for (const Merge& merge : merges) merges_json.push_back(vocab[merge.left_id] + " " + vocab[merge.right_id]);

  nlohmann::json tokenizer = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", {added_token(0, "<unk>"), added_token(1, "<s>"), added_token(2, "</s>")}},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers",
         {{{"type", "Prepend"}, {"prepend", kSpaceMarker}},
          {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSpaceMarker}}}}}},
      {"pre_tokenizer", nullptr},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single",
         {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair",
         {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
          {{"SpecialToken", {{"id", "<s>"}, {"type_id", 1}}}},
          {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
        {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         {{{"type", "Replace"}, {"pattern", {{"String", kSpaceMarker}}}, {"content", " "}},
          {{"type", "ByteFallback"}},
          {{"type", "Fuse"}},
          {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", "<unk>"},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", true},
        {"byte_fallback", true},
        {"ignore_merges", false},
        {"vocab", vocab_json},
        {"merges", merges_json}}},
  };

  nlohmann::json added_tokens_decoder = nlohmann::json::object();
  for (int id = 0; id < 3; ++id) {
    nlohmann::json entry = added_token(id, special[id]);
    entry.erase("id");
    added_tokens_decoder[std::to_string(id)] = entry;
  }
  nlohmann::json config = {
      {"add_bos_token", true},
      {"add_eos_token", false},
      {"bos_token", "<s>"},
      {"eos_token", "</s>"},
      {"unk_token", "<unk>"},
      {"pad_token", nullptr},
      {"legacy", true},
      {"clean_up_tokenization_spaces", false},
      {"model_max_length", 512},
      {"sp_model_kwargs", nlohmann::json::object()},
      {"tokenizer_class", "LlamaTokenizer"},
      {"added_tokens_decoder", added_tokens_decoder},
  };
  return {std::move(tokenizer), std::move(config)};
}

}  // namespace swiftkv::tokenizer
