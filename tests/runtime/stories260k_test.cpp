// End to end on a real pretrained model: stories260K imported from llama2.c format must
// reproduce its published greedy story and its published perplexity on TinyStories.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "io/llama2c.h"
#include "kernels/gemm.h"
#include "model/model.h"
#include "runtime/eval.h"
#include "runtime/generator.h"
#include "test_paths.h"
#include "tokenizer/tokenizer.h"

namespace swiftkv::runtime {
namespace {

using swiftkv::testing::fresh_temp_dir;
using swiftkv::testing::shared_dir;

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

class Stories260K : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_dir_ = fresh_temp_dir("stories260K");
    std::filesystem::remove(model_dir_);
    io::import_llama2c(shared_dir() / "data/stories260K/stories260K.bin",
                       shared_dir() / "data/stories260K/tok512.bin", model_dir_);
    kernels::set_num_threads(2);
  }
  static std::unique_ptr<model::Model> load(kernels::WeightType type) {
    model::LoadOptions options;
    options.weight_type = type;
    return model::Model::load(model_dir_, options);
  }
  // The paragraphs the llama2.c README published, as stories260K/README.md quotes them.
  static std::string published_text() {
    std::istringstream readme(read_file(shared_dir() / "data/stories260K/README.md"));
    std::string line, text;
    while (std::getline(readme, line))
      if (line.rfind("Once upon a time", 0) == 0) break;
    text = line + "\n";
    std::getline(readme, line);
    return text + line;
  }
  // Mean NLL over the dev text, scored as llama2.c's reference figure was (runtime/eval.h).
  static std::pair<double, int64_t> dev_text_nll(const model::Model& model,
                                                 const tokenizer::Tokenizer& tokenizer) {
    const std::string text = read_eval_text(shared_dir() / "data/tinystories/tinystories_dev.txt");
    EvalResult result = evaluate({model, model::Path::SwiftKV}, eval_sequences(tokenizer, text, 512));
    return {result.mean_nll, result.tokens};
  }
  static std::filesystem::path model_dir_;
};
std::filesystem::path Stories260K::model_dir_;

TEST_F(Stories260K, GreedyFromBosReproducesThePublishedStory) {
  auto model = load(kernels::WeightType::F32);
  auto tokenizer = tokenizer::Tokenizer::from_dir(model_dir_);
  Generator generator(*model, tokenizer, model::Path::SwiftKV);
  EngineRequest request;
  request.prompt = {*tokenizer.bos_id()};
  request.max_tokens = 500;
  request.sampling.temperature = 0;
  std::string streamed;
  GenerationResult result = generator.generate(request, [&](std::string_view piece) { streamed += piece; });

  const std::string published = published_text();
  ASSERT_GT(published.size(), 200u);
  EXPECT_EQ(result.text.substr(0, published.size()), published);
  EXPECT_EQ(streamed, result.text);
  // llama2.c: 345 tokens, then the model ends the story with BOS (an eos id of the import).
  EXPECT_EQ(result.finish_reason, FinishReason::Stop);
  EXPECT_EQ(result.tokens.size(), 346u);
  EXPECT_EQ(result.tokens.back(), 1);
}

TEST_F(Stories260K, DevTextNllMatchesLlama2cAndBf16StaysWithinOnePercent) {
  auto tokenizer = tokenizer::Tokenizer::from_dir(model_dir_);
  auto [f32_nll, f32_tokens] = dev_text_nll(*load(kernels::WeightType::F32), tokenizer);
  EXPECT_EQ(f32_tokens, 259418);
  EXPECT_NEAR(f32_nll, 1.6633, 0.002);
  auto [bf16_nll, bf16_tokens] = dev_text_nll(*load(kernels::WeightType::BF16), tokenizer);
  EXPECT_EQ(bf16_tokens, f32_tokens);
  EXPECT_NEAR(bf16_nll, f32_nll, 0.01 * f32_nll);
  std::printf("mean NLL f32 %.5f, bf16 %.5f over %lld tokens\n", f32_nll, bf16_nll, (long long)f32_tokens);
}

}  // namespace
}  // namespace swiftkv::runtime
