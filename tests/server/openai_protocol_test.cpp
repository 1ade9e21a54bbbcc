// Parsing and validation of /v1/completions and /v1/chat/completions requests: prompt shapes,
// defaults, and every refusal as a 400 naming the field.
#include "server/openai_protocol.h"

#include <gtest/gtest.h>

#include "server/protocol_test_util.h"
#include "server/request_fields.h"

namespace swiftkv::server {
namespace {

using swiftkv::testing::expect_api_error;

class CompletionParsing : public swiftkv::testing::ServedStories {
 protected:
  CompletionRequest completion(const std::string& body) {
    return parse_completion_request(parse_request_body(body), model_);
  }
  CompletionRequest chat(const std::string& body) {
    return parse_chat_request(parse_request_body(body), model_);
  }
  std::vector<int32_t> encode(const std::string& text, bool bos = true) {
    return tokenizer().encode(text, bos);
  }
};

TEST_F(CompletionParsing, PromptsAsTextTextListIdsAndIdLists) {
  CompletionRequest text = completion(R"({"model": "stories", "prompt": "Once upon a time"})");
  ASSERT_EQ(text.prompts.size(), 1u);
  EXPECT_EQ(text.prompts[0].ids, encode("Once upon a time"));
  EXPECT_EQ(text.prompts[0].ids.front(), *tokenizer().bos_id());  // BOS as the tokenizer adds it
  EXPECT_EQ(text.prompts[0].text, "Once upon a time");

  CompletionRequest texts = completion(R"({"prompt": ["Tom ran", "The sun"]})");
  ASSERT_EQ(texts.prompts.size(), 2u);
  EXPECT_EQ(texts.prompts[1].ids, encode("The sun"));

  const std::vector<int32_t> ids = encode("Lily saw a dog");
  CompletionRequest id_prompt = completion(R"({"prompt": )" + Json(ids).dump() + "}");
  ASSERT_EQ(id_prompt.prompts.size(), 1u);
  EXPECT_EQ(id_prompt.prompts[0].ids, ids);  // given ids are used as they are (no BOS added)
  EXPECT_EQ(id_prompt.prompts[0].text, "Lily saw a dog");

  CompletionRequest id_lists = completion(R"({"prompt": [[1, 2, 3], )" + Json(ids).dump() + "]}");
  ASSERT_EQ(id_lists.prompts.size(), 2u);
  EXPECT_EQ(id_lists.prompts[0].ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(id_lists.prompts[1].ids, ids);

  CompletionRequest no_bos = completion(R"({"prompt": "Tom", "add_special_tokens": false})");
  EXPECT_EQ(no_bos.prompts[0].ids, encode("Tom", false));
}

TEST_F(CompletionParsing, DefaultsComeFromTheModelAndOpenAI) {
  CompletionRequest request = completion(R"({"prompt": "Hi"})");
  EXPECT_EQ(request.engine.max_tokens, 16);  // OpenAI's default for completions
  EXPECT_EQ(request.engine.sampling.temperature, 0.5f);
  EXPECT_EQ(request.engine.sampling.top_k, 7);
  EXPECT_FALSE(request.stream);
  EXPECT_FALSE(request.logprobs);
  EXPECT_EQ(request.engine.logprobs, -1);
  // No seed: each request samples differently.
  EXPECT_NE(request.engine.sampling.seed, completion(R"({"prompt": "Hi"})").engine.sampling.seed);

  CompletionRequest given = completion(R"({"prompt": "Hi", "max_tokens": 5, "temperature": 0, "top_p": 0.9,
      "top_k": -1, "min_p": 0.1, "presence_penalty": 1.5, "frequency_penalty": -0.5, "repetition_penalty": 1.2,
      "seed": 42, "stop": "x", "ignore_eos": true, "stream": true, "stream_options": {"include_usage": true},
      "user": "ignored", "some_unknown_field": [1, 2]})");
  EXPECT_EQ(given.engine.max_tokens, 5);
  EXPECT_EQ(given.engine.sampling.temperature, 0.0f);
  EXPECT_FLOAT_EQ(given.engine.sampling.top_p, 0.9f);
  EXPECT_EQ(given.engine.sampling.top_k, -1);
  EXPECT_FLOAT_EQ(given.engine.sampling.min_p, 0.1f);
  EXPECT_FLOAT_EQ(given.engine.sampling.presence_penalty, 1.5f);
  EXPECT_FLOAT_EQ(given.engine.sampling.frequency_penalty, -0.5f);
  EXPECT_FLOAT_EQ(given.engine.sampling.repetition_penalty, 1.2f);
  EXPECT_EQ(given.engine.sampling.seed, 42u);
  EXPECT_EQ(given.engine.stop, std::vector<std::string>{"x"});
  EXPECT_TRUE(given.engine.ignore_eos);
  EXPECT_TRUE(given.stream);
  EXPECT_TRUE(given.include_usage);

  // Chat: the completion may fill the context by default.
  CompletionRequest chat_request = chat(R"({"messages": [{"role": "user", "content": "Hi"}]})");
  EXPECT_EQ(chat_request.engine.max_tokens,
            model_.max_model_len - int64_t(chat_request.prompts[0].ids.size()));
  EXPECT_EQ(chat(R"({"messages": [{"role": "user", "content": "Hi"}], "max_completion_tokens": 3})")
                .engine.max_tokens,
            3);
}

TEST_F(CompletionParsing, LogprobsAndEchoTheWayLmEvalSendsThem) {
  // lm-evaluation-harness local-completions, loglikelihood requests.
  CompletionRequest request = completion(
      R"({"model": "stories", "prompt": [[1, 400, 401], [1, 402]], "max_tokens": 1, "temperature": 0,
          "logprobs": 1, "echo": true, "seed": 1234})");
  EXPECT_EQ(request.prompts.size(), 2u);
  EXPECT_TRUE(request.logprobs);
  EXPECT_EQ(request.engine.logprobs, 1);
  EXPECT_TRUE(request.engine.prompt_logprobs);
  EXPECT_FALSE(request.drop_generated);

  // echo with max_tokens 0 (vLLM allows it): one token is generated for the engine and dropped.
  CompletionRequest scored_only =
      completion(R"({"prompt": "Tom", "max_tokens": 0, "echo": true, "logprobs": 0})");
  EXPECT_TRUE(scored_only.drop_generated);
  EXPECT_EQ(scored_only.engine.max_tokens, 1);
  EXPECT_EQ(scored_only.engine.logprobs, 0);

  // Logprobs without echo do not score the prompt.
  EXPECT_FALSE(completion(R"({"prompt": "Tom", "logprobs": 3})").engine.prompt_logprobs);

  CompletionRequest chat_logprobs =
      chat(R"({"messages": [{"role": "user", "content": "Hi"}], "logprobs": true, "top_logprobs": 2})");
  EXPECT_TRUE(chat_logprobs.logprobs);
  EXPECT_EQ(chat_logprobs.engine.logprobs, 2);
  EXPECT_FALSE(chat_logprobs.engine.prompt_logprobs);
}

TEST_F(CompletionParsing, ChatRendersTheTemplateWithoutASecondBos) {
  CompletionRequest request = chat(R"({"model": "stories", "messages": [
      {"role": "system", "content": "Be brief."},
      {"role": "user", "content": [{"type": "text", "text": "Tell"}, {"type": "text", "text": "a story"}]}]})");
  const std::string rendered = "<s><|system|>\nBe brief.\n<|user|>\nTell\na story\n<|assistant|>\n";
  ASSERT_EQ(tokenizer().bos_token(), "<s>");
  // The template writes BOS, so the text is tokenized without adding another.
  EXPECT_EQ(request.prompts[0].ids, encode(rendered, false));
  EXPECT_EQ(std::count(request.prompts[0].ids.begin(), request.prompts[0].ids.end(), *tokenizer().bos_id()),
            1);

  tokenizer::ChatTemplate no_bos("{% for m in messages %}{{ m.content }}{% endfor %}");
  model_.chat_template = &no_bos;
  EXPECT_EQ(chat(R"({"messages": [{"role": "user", "content": "Tom"}]})").prompts[0].ids,
            encode("Tom", true));

  model_.chat_template = nullptr;
  const std::string message = expect_api_error(
      [&] { chat(R"({"messages": [{"role": "user", "content": "Hi"}]})"); }, 400, "messages");
  EXPECT_NE(message.find("--chat-template"), std::string::npos) << message;
}

struct BadRequest {
  std::string body;
  std::string param;  // the field the error must name
};

TEST_F(CompletionParsing, BadCompletionRequestsAre400sNamingTheField) {
  const std::string long_prompt = Json(std::vector<int32_t>(64, 5)).dump();
  const std::string almost_full = Json(std::vector<int32_t>(60, 5)).dump();
  const std::vector<BadRequest> cases = {
      {R"({"prompt": "Hi", "model": "gpt-4"})", "model"},
      {R"({"prompt": "Hi", "model": 3})", "model"},
      {R"({"max_tokens": 3})", "prompt"},
      {R"({"prompt": 17})", "prompt"},
      {R"({"prompt": []})", "prompt"},
      {R"({"prompt": ["a", [1, 2]]})", "prompt"},
      {R"({"prompt": [[1, 2], "a"]})", "prompt"},
      {R"({"prompt": [1, "a"]})", "prompt"},
      {R"({"prompt": [[]]})", "prompt"},
      {R"({"prompt": [1, -1]})", "prompt"},
      {R"({"prompt": [1, 512]})", "prompt"},
      {R"({"prompt": [1, 2.5]})", "prompt"},
      {R"({"prompt": [1, 99999999999999999999]})", "prompt"},
      {R"({"prompt": "", "add_special_tokens": false})", "prompt"},
      {R"({"prompt": )" + long_prompt + "}", "prompt"},
      {R"({"prompt": )" + almost_full + R"(, "max_tokens": 5})", "max_tokens"},
      {R"({"prompt": "Hi", "max_tokens": 0})", "max_tokens"},
      {R"({"prompt": "Hi", "max_tokens": -3})", "max_tokens"},
      {R"({"prompt": "Hi", "max_tokens": "5"})", "max_tokens"},
      {R"({"prompt": "Hi", "max_tokens": 2.5})", "max_tokens"},
      {R"({"prompt": "Hi", "temperature": "hot"})", "temperature"},
      {R"({"prompt": "Hi", "temperature": -1})", "temperature"},
      {R"({"prompt": "Hi", "top_p": 0})", "top_p"},
      {R"({"prompt": "Hi", "top_p": 1.5})", "top_p"},
      {R"({"prompt": "Hi", "top_k": -2})", "top_k"},
      {R"({"prompt": "Hi", "min_p": 2})", "min_p"},
      {R"({"prompt": "Hi", "presence_penalty": 3})", "presence_penalty"},
      {R"({"prompt": "Hi", "frequency_penalty": true})", "frequency_penalty"},
      {R"({"prompt": "Hi", "repetition_penalty": 0})", "repetition_penalty"},
      {R"({"prompt": "Hi", "seed": "x"})", "seed"},
      {R"({"prompt": "Hi", "stop": 5})", "stop"},
      {R"({"prompt": "Hi", "stop": ["a", 5]})", "stop"},
      {R"({"prompt": "Hi", "stop": [""]})", "stop"},
      {R"({"prompt": "Hi", "stream": "yes"})", "stream"},
      {R"({"prompt": "Hi", "stream": true, "stream_options": 1})", "stream_options"},
      {R"({"prompt": "Hi", "stream": true, "stream_options": {"include_usage": 1}})", "include_usage"},
      {R"({"prompt": "Hi", "echo": 1})", "echo"},
      {R"({"prompt": "Hi", "logprobs": 21})", "logprobs"},
      {R"({"prompt": "Hi", "logprobs": true})", "logprobs"},
      {R"({"prompt": "Hi", "n": 2})", "n"},
      {R"({"prompt": "Hi", "best_of": 3})", "best_of"},
      {R"({"prompt": "Hi", "min_tokens": 2})", "min_tokens"},
      {R"({"prompt": "Hi", "ignore_eos": "no"})", "ignore_eos"},
      {R"({"prompt": "Hi", "logit_bias": {"5": 100}})", "logit_bias"},
      {R"({"prompt": "Hi", "suffix": "end"})", "suffix"},
      {R"({"prompt": "Hi", "add_special_tokens": "yes"})", "add_special_tokens"},
  };
  for (const BadRequest& bad : cases) {
    SCOPED_TRACE(bad.body);
    expect_api_error([&] { completion(bad.body); }, 400, bad.param);
  }
}

TEST_F(CompletionParsing, BadChatRequestsAre400sNamingTheField) {
  const std::vector<BadRequest> cases = {
      {R"({"model": "other", "messages": [{"role": "user", "content": "Hi"}]})", "model"},
      {R"({})", "messages"},
      {R"({"messages": []})", "messages"},
      {R"({"messages": "Hi"})", "messages"},
      {R"({"messages": ["Hi"]})", "messages[0]"},
      {R"({"messages": [{"content": "Hi"}]})", "messages[0].role"},
      {R"({"messages": [{"role": "user", "content": 5}]})", "messages[0].content"},
      {R"({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]})",
       "messages[0].content[0]"},
      {R"({"messages": [{"role": "user", "content": "Hi"}], "logprobs": "yes"})", "logprobs"},
      {R"({"messages": [{"role": "user", "content": "Hi"}], "top_logprobs": 2})", "top_logprobs"},
      {R"({"messages": [{"role": "user", "content": "Hi"}], "logprobs": true, "top_logprobs": 99})",
       "top_logprobs"},
      {R"({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 0})", "max_tokens"},
      {R"({"messages": [{"role": "user", "content": "Hi"}], "max_completion_tokens": 99})",
       "max_completion_tokens"},
      {R"({"messages": [{"role": "user", "content": "Hi"}], "chat_template_kwargs": []})",
       "chat_template_kwargs"},
      {R"({"messages": [{"role": "user", "content": "Hi"}], "tools": {}})", "tools"},
      {R"({"messages": [{"role": "user", "content": "Hi"}], "n": 4})", "n"},
  };
  for (const BadRequest& bad : cases) {
    SCOPED_TRACE(bad.body);
    expect_api_error([&] { chat(bad.body); }, 400, bad.param);
  }
}

TEST(RequestBody, MalformedJsonInvalidUtf8AndNonObjectsAre400s) {
  const std::string invalid_utf8 = std::string(R"({"prompt": "caf)") + "\xC3\x28" + R"("})";
  for (const std::string& body :
       {std::string("{\"prompt\": "), std::string("not json"), std::string("[1, 2]"), std::string("\"text\""),
        invalid_utf8, std::string(R"({"prompt": "\ud800"})")}) {
    SCOPED_TRACE(body);
    const std::string message = expect_api_error([&] { parse_request_body(body); }, 400, "");
    EXPECT_FALSE(message.empty());
  }
  EXPECT_NE(expect_api_error([&] { parse_request_body(invalid_utf8); }, 400, "").find("UTF-8"),
            std::string::npos);
}

// An object whose field `x` holds arrays nested `levels` deep in all (the object counts).
std::string nested_body(int levels) {
  return R"({"x": )" + std::string(levels - 1, '[') + std::string(levels - 1, ']') + "}";
}

TEST(RequestBody, NestingDeeperThan64LevelsIsA400) {
  EXPECT_TRUE(parse_request_body(nested_body(64))["x"].is_array());
  for (int levels : {65, 500000}) {
    SCOPED_TRACE(levels);
    const std::string message = expect_api_error([&] { parse_request_body(nested_body(levels)); }, 400, "");
    EXPECT_NE(message.find("deeper than 64"), std::string::npos) << message;
  }
}

TEST(RequestBody, IntegersMayBeWrittenAsIntegralFloats) {
  const Json body = Json::parse(R"({"a": 3.0, "b": 3.5, "c": 1e300, "d": -4})");
  RequestFields fields(body);
  EXPECT_EQ(fields.integer("a", 0, 10), 3);
  expect_api_error([&] { fields.integer("b", 0, 10); }, 400, "b");
  expect_api_error([&] { fields.integer("c", 0, 10); }, 400, "c");
  expect_api_error([&] { fields.integer("d", 0, 10); }, 400, "d");
  EXPECT_EQ(fields.integer("missing", 0, 10), std::nullopt);
}

}  // namespace
}  // namespace swiftkv::server
