#pragma once
// A ServedModel over stories260K's tokenizer for the protocol's unit tests.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>

#include "server/api_error.h"
#include "server/openai_protocol.h"
#include "server/serve_process.h"

namespace swiftkv::testing {

// A small template in the usual shape: BOS, one block per message, the generation prompt.
inline const char* kTestChatTemplate =
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}";

class ServedStories : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const auto dir = import_stories260k("protocol_stories260K");
    tokenizer_ = std::make_unique<tokenizer::Tokenizer>(tokenizer::Tokenizer::from_dir(dir));
    chat_template_ = std::make_unique<tokenizer::ChatTemplate>(kTestChatTemplate);
    std::filesystem::remove_all(dir);
  }
  static void TearDownTestSuite() {
    tokenizer_.reset();
    chat_template_.reset();
  }
  void SetUp() override {
    model_.name = "stories";
    model_.tokenizer = tokenizer_.get();
    model_.chat_template = chat_template_.get();
    model_.vocab_size = 512;
    model_.max_model_len = 64;
    model_.default_sampling.temperature = 0.5f;
    model_.default_sampling.top_k = 7;
  }
  const tokenizer::Tokenizer& tokenizer() const { return *tokenizer_; }

  server::ServedModel model_;
  static std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
  static std::unique_ptr<tokenizer::ChatTemplate> chat_template_;
};
inline std::unique_ptr<tokenizer::Tokenizer> ServedStories::tokenizer_;
inline std::unique_ptr<tokenizer::ChatTemplate> ServedStories::chat_template_;

// Runs `action`, expects an ApiError with this status naming `param`; returns its message.
template <typename Action>
std::string expect_api_error(Action&& action, int status, const std::string& param) {
  try {
    action();
  } catch (const server::ApiError& error) {
    EXPECT_EQ(error.status(), status) << error.what();
    EXPECT_EQ(error.param(), param) << error.what();
    return error.what();
  }
  ADD_FAILURE() << "expected an ApiError naming `" << param << "`";
  return {};
}

}  // namespace swiftkv::testing
