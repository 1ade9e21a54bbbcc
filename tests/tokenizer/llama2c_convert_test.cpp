// The converted tok512 tokenizer.json has Hugging Face's Llama-2 shape. Its encoding is
// checked against llama2.c's algorithm in llama2c_encode_test.cpp.
#include <gtest/gtest.h>

#include <fstream>

#include "common/error.h"
#include "test_paths.h"
#include "tokenizer/llama2c_tokenizer.h"

namespace swiftkv::tokenizer {
namespace {

std::filesystem::path tok512() { return testing::shared_dir() / "data/stories260K/tok512.bin"; }

TEST(Llama2cConvert, HasLlama2Shape) {
  HfTokenizerFiles files = convert_llama2c_tokenizer(tok512());
  const nlohmann::json& model = files.tokenizer_json["model"];
  EXPECT_EQ(model["type"], "BPE");
  EXPECT_EQ(model["byte_fallback"], true);
  EXPECT_EQ(model["unk_token"], "<unk>");
  ASSERT_EQ(model["vocab"].size(), 512u);
  EXPECT_EQ(model["vocab"]["<unk>"], 0);
  EXPECT_EQ(model["vocab"]["<s>"], 1);
  EXPECT_EQ(model["vocab"]["</s>"], 2);
  EXPECT_EQ(model["vocab"]["<0x00>"], 3);
  EXPECT_EQ(model["vocab"]["<0xFF>"], 258);
  // llama2.c stores " t" (score 0) and "he" (score -1): the best two merges, in this order.
  EXPECT_EQ(model["vocab"]["\xE2\x96\x81t"], 259);
  EXPECT_EQ(model["merges"][0], "\xE2\x96\x81 t");
  EXPECT_EQ(model["merges"][1], "h e");
  // "left right" strings: no piece may hold a plain space, or the pair would be ambiguous.
  for (const auto& merge : model["merges"]) {
    std::string text = merge.get<std::string>();
    ASSERT_EQ(text.find(' '), text.rfind(' ')) << text;
  }
  ASSERT_EQ(files.tokenizer_json["added_tokens"].size(), 3u);
  EXPECT_EQ(files.tokenizer_json["added_tokens"][1]["content"], "<s>");
  EXPECT_EQ(files.tokenizer_json["added_tokens"][1]["special"], true);
  EXPECT_EQ(files.tokenizer_json["normalizer"]["normalizers"][0]["type"], "Prepend");
  EXPECT_EQ(files.tokenizer_json["decoder"]["decoders"][3]["type"], "Strip");
  EXPECT_EQ(files.tokenizer_config_json["bos_token"], "<s>");
  EXPECT_EQ(files.tokenizer_config_json["eos_token"], "</s>");
  EXPECT_EQ(files.tokenizer_config_json["add_bos_token"], true);
  EXPECT_EQ(files.tokenizer_config_json["add_eos_token"], false);
}

TEST(Llama2cConvert, TruncatedFileNamesTheFile) {
  auto dir = testing::fresh_temp_dir("tok_truncated");
  std::ifstream in(tok512(), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto path = dir / "tok.bin";
  std::ofstream(path, std::ios::binary) << bytes.substr(0, bytes.size() - 3);
  try {
    convert_llama2c_tokenizer(path);
    FAIL() << "truncated tokenizer accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tok.bin"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("token 511"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace swiftkv::tokenizer
