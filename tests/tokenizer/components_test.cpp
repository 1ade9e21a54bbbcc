// Parts the real tokenizer files above do not exercise (Mistral-style Metaspace, Split
// behaviours, lstrip/rstrip added tokens, chat_template lists), on a tiny hand-made
// tokenizer.json whose expected ids follow Hugging Face's documented rules.
#include <gtest/gtest.h>

#include "common/error.h"
#include "tokenizer/tokenizer.h"

namespace swiftkv::tokenizer {
namespace {

const std::string kMeta = "\xE2\x96\x81";  // ▁

nlohmann::json tiny_model() {
  nlohmann::json vocab = {{"<unk>", 0},     {kMeta, 1},       {"a", 2},  {"b", 3},
                          {kMeta + "a", 4}, {kMeta + "b", 5}, {"ab", 6}, {",", 7}};
  return {{"type", "BPE"},
          {"unk_token", "<unk>"},
          {"fuse_unk", true},
          {"vocab", vocab},
          {"merges", {nlohmann::json::array({kMeta, "a"}), nlohmann::json::array({kMeta, "b"}), "a b"}}};
}

nlohmann::json added(int id, const std::string& content, bool lstrip, bool rstrip) {
  return {{"id", id},         {"content", content},  {"lstrip", lstrip},
          {"rstrip", rstrip}, {"normalized", false}, {"special", true}};
}

TEST(Components, MetaspaceFirstSchemeAndDecoder) {
  nlohmann::json json = {
      {"model", tiny_model()},
      {"added_tokens", {added(8, "<x>", false, false)}},
      {"pre_tokenizer",
       {{"type", "Metaspace"}, {"replacement", kMeta}, {"prepend_scheme", "first"}, {"split", true}}},
      {"decoder",
       {{"type", "Metaspace"}, {"replacement", kMeta}, {"prepend_scheme", "first"}, {"split", true}}}};
  Tokenizer tokenizer = Tokenizer::from_json(json, nullptr);
  // "first": only the text at the very start gets the "▁"; after <x> none is added.
  EXPECT_EQ(tokenizer.encode("a b"), (std::vector<int32_t>{4, 5}));
  EXPECT_EQ(tokenizer.encode("a<x>ab"), (std::vector<int32_t>{4, 8, 6}));
  // Unknown characters become one fused <unk>.
  EXPECT_EQ(tokenizer.encode("a zz"), (std::vector<int32_t>{4, 1, 0}));
  EXPECT_EQ(tokenizer.decode({4, 5}), "a b");
}

TEST(Components, AddedTokenStripsAndSplitRemoved) {
  nlohmann::json json = {
      {"model", tiny_model()},
      {"added_tokens",
       {added(8, "<l>", true, false), added(9, "<r>", false, true), added(10, "<l><r>", false, false)}},
      {"pre_tokenizer",
       {{"type", "Split"}, {"pattern", {{"String", ","}}}, {"behavior", "Removed"}, {"invert", false}}},
      {"post_processor", nullptr}};
  Tokenizer tokenizer = Tokenizer::from_json(
      json, {{"chat_template",
              {{{"name", "tool_use"}, {"template", "T"}}, {{"name", "default"}, {"template", "D"}}}}});
  // lstrip swallows the spaces before <l>, rstrip those after <r>; the longest match wins.
  EXPECT_EQ(tokenizer.encode("a  <l>b"), (std::vector<int32_t>{2, 8, 3}));
  EXPECT_EQ(tokenizer.encode("a<r>  b"), (std::vector<int32_t>{2, 9, 3}));
  EXPECT_EQ(tokenizer.encode("<l><r>"), (std::vector<int32_t>{10}));
  // Split(",", Removed) drops the commas; "a" and "b" are then separate words.
  EXPECT_EQ(tokenizer.encode("a,b,ab"), (std::vector<int32_t>{2, 3, 6}));
  EXPECT_EQ(tokenizer.chat_template(), "D");
}

TEST(Components, UnsupportedPartsAreNamed) {
  nlohmann::json json = {{"model", tiny_model()}, {"normalizer", {{"type", "BertNormalizer"}}}};
  try {
    Tokenizer::from_json(json, nullptr);
    FAIL() << "unsupported normalizer accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("BertNormalizer"), std::string::npos) << e.what();
  }
  // Corrupt ids: negative, or so large the id table would take gigabytes.
  for (nlohmann::json id : {nlohmann::json(-1), nlohmann::json(2000000000), nlohmann::json("7")}) {
    nlohmann::json bad_vocab = tiny_model();
    bad_vocab["vocab"]["b"] = id;
    EXPECT_THROW(Tokenizer::from_json({{"model", bad_vocab}}, nullptr), Error) << id;
    try {
      Tokenizer::from_json({{"model", tiny_model()}, {"added_tokens", {added(0, "<x>", false, false)}}},
                           nullptr);
      nlohmann::json bad_added = {{"model", tiny_model()}, {"added_tokens", {added(0, "<x>", false, false)}}};
      bad_added["added_tokens"][0]["id"] = id;
      Tokenizer::from_json(bad_added, nullptr);
      FAIL() << "added token id " << id << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("<x>"), std::string::npos) << e.what();
    }
  }
  nlohmann::json bad_merge = tiny_model();
  bad_merge["merges"].push_back("a zz");
  EXPECT_THROW(Tokenizer::from_json({{"model", bad_merge}}, nullptr), Error);
}

}  // namespace
}  // namespace swiftkv::tokenizer
