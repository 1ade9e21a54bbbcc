// Response JSON from engine events: stream deltas that add up to the whole choice, logprobs in
// the legacy completions and chat shapes, echo, usage, SSE framing, and text that is not UTF-8.
#include "server/openai_responses.h"

#include <gtest/gtest.h>

#include <cmath>

#include "server/protocol_test_util.h"

namespace swiftkv::server {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

class Responses : public swiftkv::testing::ServedStories {
 protected:
  CompletionRequest completion(const Json& body) { return parse_completion_request(body, model_); }
  CompletionRequest chat(const Json& body) { return parse_chat_request(body, model_); }
  // The text `ids` add after `context`, as the engine streams it.
  std::string continuation(const std::vector<int32_t>& context, const std::vector<int32_t>& ids) {
    std::vector<int32_t> all = context;
    all.insert(all.end(), ids.begin(), ids.end());
    return tokenizer().decode(all, true).substr(tokenizer().decode(context, true).size());
  }
  // An event of `ids` generated after `context` (the prompt and the tokens before).
  runtime::RequestOutput event(const std::vector<int32_t>& context, const std::vector<int32_t>& ids,
                               int64_t generated_so_far,
                               runtime::FinishReason finish = runtime::FinishReason::None) {
    runtime::RequestOutput output;
    output.tokens = ids;
    output.text = continuation(context, ids);
    output.generated_tokens = generated_so_far;
    output.prompt_tokens =
        static_cast<int64_t>(context.size()) - generated_so_far + static_cast<int64_t>(ids.size());
    output.finish_reason = finish;
    return output;
  }
};

TEST_F(Responses, StreamDeltasAddUpToTheWholeCompletion) {
  const std::vector<int32_t> story = tokenizer().encode("Tom ran to the park", true);
  const std::vector<int32_t> prompt(story.begin(), story.begin() + 3);
  const std::vector<int32_t> first(story.begin() + 3, story.begin() + 5),
      second(story.begin() + 5, story.end());
  CompletionRequest request =
      completion({{"prompt", {std::vector<int32_t>{1, 5}, prompt}}, {"max_tokens", 9}});
  ChoiceBuilder choice(request, 1, tokenizer());
  std::vector<int32_t> context = prompt;
  std::string streamed;
  for (const auto& ids : {first, second}) {
    const bool last = ids == second;
    const runtime::RequestOutput output =
        event(context, ids, int64_t(context.size() - prompt.size() + ids.size()),
              last ? runtime::FinishReason::Length : runtime::FinishReason::None);
    context.insert(context.end(), ids.begin(), ids.end());
    Json delta = choice.add(output);
    ASSERT_FALSE(delta.is_null());
    EXPECT_EQ(delta["index"], 1);
    streamed += delta["text"].get<std::string>();
    EXPECT_EQ(delta["finish_reason"], last ? Json("length") : Json());
  }
  EXPECT_EQ(streamed, continuation(prompt, {story.begin() + 3, story.end()}));
  EXPECT_TRUE(streamed.ends_with(" to the park")) << streamed;
  Json whole = choice.choice();
  EXPECT_EQ(whole["text"], streamed);
  EXPECT_EQ(whole["index"], 1);
  EXPECT_EQ(whole["finish_reason"], "length");
  EXPECT_TRUE(whole["logprobs"].is_null());
  EXPECT_EQ(choice.prompt_tokens(), int64_t(prompt.size()));
  EXPECT_EQ(choice.completion_tokens(), int64_t(story.size() - prompt.size()));
  // An event that adds nothing (text held back for a stop string) sends nothing.
  ChoiceBuilder quiet(request, 0, tokenizer());
  runtime::RequestOutput held = event(prompt, first, 2);
  held.text.clear();
  EXPECT_TRUE(quiet.add(held).is_null());
}

TEST_F(Responses, ChatChoicesCarryAMessageAndStreamsOpenWithTheRole) {
  CompletionRequest request = chat({{"messages", Json::array({{{"role", "user"}, {"content", "Hi"}}})}});
  const std::vector<int32_t>& prompt = request.prompts[0].ids;
  ChoiceBuilder choice(request, 0, tokenizer());
  Json opening = choice.role_delta();
  EXPECT_EQ(opening["delta"]["role"], "assistant");
  const std::vector<int32_t> ids = tokenizer().encode("Tom", false);
  const std::string text = continuation(prompt, ids);
  ASSERT_FALSE(text.empty());
  Json delta = choice.add(event(prompt, ids, 1));
  EXPECT_EQ(delta["delta"], Json({{"content", text}}));
  Json last = choice.add(event(prompt, {}, 1, runtime::FinishReason::Stop));
  EXPECT_EQ(last["delta"], Json::object());
  EXPECT_EQ(last["finish_reason"], "stop");
  EXPECT_EQ(choice.choice()["message"], Json({{"role", "assistant"}, {"content", text}}));
}

TEST_F(Responses, EchoedPromptLogprobsInTheLegacyShape) {
  CompletionRequest request =
      completion({{"prompt", "Tom ran"}, {"max_tokens", 1}, {"logprobs", 1}, {"echo", true}});
  const std::vector<int32_t>& prompt = request.prompts[0].ids;  // <s> T om ▁r an
  ASSERT_EQ(prompt.size(), 5u);
  const int32_t to = tokenizer().encode("Tom ran to", true).back();  // ▁to
  runtime::RequestOutput output = event(prompt, {to}, 1, runtime::FinishReason::Length);
  output.prompt_logprobs = {{prompt[0], kNaN, {}},
                            {prompt[1], -2.0f, {{prompt[1], -2.0f}}},
                            {prompt[2], -3.0f, {{to, -1.0f}}},
                            {prompt[3], -1.5f, {{prompt[3], -1.5f}}},
                            {prompt[4], -0.75f, {{prompt[4], -0.75f}}}};
  output.logprobs = {{to, -0.5f, {{to, -0.5f}}}};
  ChoiceBuilder choice(request, 0, tokenizer());
  Json delta = choice.add(output);
  EXPECT_EQ(delta["text"], "Tom ran to");  // the prompt leads an echoed choice
  const Json whole_choice = choice.choice();
  const Json& logprobs = whole_choice["logprobs"];
  EXPECT_EQ(logprobs, delta["logprobs"]);
  // Each token's text in context; BOS (special) shows as nothing.
  EXPECT_EQ(logprobs["tokens"], Json({"", "T", "om", " r", "an", " to"}));
  EXPECT_EQ(logprobs["token_logprobs"], Json({nullptr, -2.0, -3.0, -1.5, -0.75, -0.5}));
  // The first prompt token has no distribution; the others list the alternatives plus the
  // chosen token when it is not among them.
  EXPECT_EQ(logprobs["top_logprobs"][0], nullptr);
  EXPECT_EQ(logprobs["top_logprobs"][1], Json({{"T", -2.0}}));
  EXPECT_EQ(logprobs["top_logprobs"][2], Json({{" to", -1.0}, {"om", -3.0}}));
  EXPECT_EQ(logprobs["top_logprobs"][5], Json({{" to", -0.5}}));
  EXPECT_EQ(logprobs["text_offset"], Json({0, 0, 1, 3, 5, 7}));

  // max_tokens 0: only the prompt, the generated token is dropped.
  CompletionRequest scored =
      completion({{"prompt", "Tom ran"}, {"max_tokens", 0}, {"logprobs", 0}, {"echo", true}});
  ChoiceBuilder scored_choice(scored, 0, tokenizer());
  output.finish_reason = runtime::FinishReason::Stop;
  scored_choice.add(output);
  Json whole = scored_choice.choice();
  EXPECT_EQ(whole["text"], "Tom ran");
  EXPECT_EQ(whole["logprobs"]["tokens"].size(), 5u);
  EXPECT_EQ(whole["finish_reason"], "length");
  EXPECT_EQ(scored_choice.completion_tokens(), 0);
}

TEST_F(Responses, ChatLogprobsListTokensWithBytesAndAlternatives) {
  CompletionRequest request = chat({{"messages", Json::array({{{"role", "user"}, {"content", "Hi"}}})},
                                    {"logprobs", true},
                                    {"top_logprobs", 2}});
  const std::vector<int32_t>& prompt = request.prompts[0].ids;
  const std::vector<int32_t> ids = tokenizer().encode("Once", false);
  ChoiceBuilder choice(request, 0, tokenizer());
  runtime::RequestOutput output = event(prompt, {ids[0]}, 1);
  output.logprobs = {{ids[0], -0.25f, {{ids[0], -0.25f}, {ids[1], -std::numeric_limits<float>::infinity()}}}};
  choice.add(output);
  const Json whole = choice.choice();
  const Json& content = whole["logprobs"]["content"];
  ASSERT_EQ(content.size(), 1u);
  const std::string token = continuation(prompt, {ids[0]});
  EXPECT_EQ(content[0]["token"], token);
  EXPECT_EQ(content[0]["logprob"], -0.25);
  Json bytes = Json::array();
  for (unsigned char byte : token) bytes.push_back(byte);
  EXPECT_EQ(content[0]["bytes"], bytes);
  ASSERT_EQ(content[0]["top_logprobs"].size(), 2u);
  EXPECT_EQ(content[0]["top_logprobs"][0]["token"], token);
  EXPECT_EQ(content[0]["top_logprobs"][1]["logprob"], -9999.0);  // JSON has no -inf
}

TEST_F(Responses, TextThatIsNotUtf8IsWrittenWithReplacementCharacters) {
  CompletionRequest request = completion({{"prompt", "Tom"}});
  ChoiceBuilder choice(request, 0, tokenizer());
  runtime::RequestOutput output = event(request.prompts[0].ids, {}, 1, runtime::FinishReason::Length);
  output.text = "ok \xC3\x28 \xFF";
  const std::string wire =
      sse_event(chunk_json(new_response_header(request.endpoint, "m"), {choice.add(output)}));
  EXPECT_NE(wire.find("ok \xEF\xBF\xBD( \xEF\xBF\xBD"), std::string::npos) << wire;
  EXPECT_TRUE(wire.starts_with("data: {"));
  EXPECT_TRUE(wire.ends_with("}\n\n"));
  EXPECT_NO_THROW(Json::parse(wire.substr(6)));
}

TEST_F(Responses, EnvelopesFollowOpenAI) {
  ResponseHeader completion_header = new_response_header(Endpoint::Completions, "stories");
  ResponseHeader chat_header = new_response_header(Endpoint::ChatCompletions, "stories");
  EXPECT_TRUE(completion_header.id.starts_with("cmpl-"));
  EXPECT_TRUE(chat_header.id.starts_with("chatcmpl-"));
  EXPECT_NE(completion_header.id, new_response_header(Endpoint::Completions, "stories").id);
  EXPECT_GT(completion_header.created, 1'600'000'000);
  Json response = response_json(completion_header, Json::array(), usage_json(3, 4));
  EXPECT_EQ(response["object"], "text_completion");
  EXPECT_EQ(response["model"], "stories");
  EXPECT_EQ(response["usage"], Json({{"prompt_tokens", 3}, {"completion_tokens", 4}, {"total_tokens", 7}}));
  EXPECT_EQ(response_json(chat_header, Json::array(), usage_json(0, 0))["object"], "chat.completion");
  EXPECT_EQ(chunk_json(chat_header, Json::array())["object"], "chat.completion.chunk");
  EXPECT_EQ(chunk_json(completion_header, Json::array())["object"], "text_completion");
  EXPECT_STREQ(kSseDone, "data: [DONE]\n\n");
}

TEST(ErrorJson, OpenAIShape) {
  const Json error = error_json(bad_request("`max_tokens` must be at least 1", "max_tokens"));
  EXPECT_EQ(error, Json({{"error",
                          {{"message", "`max_tokens` must be at least 1"},
                           {"type", "invalid_request_error"},
                           {"param", "max_tokens"},
                           {"code", 400}}}}));
  EXPECT_TRUE(error_json(ApiError(503, "service_unavailable", "full"))["error"]["param"].is_null());
}

}  // namespace
}  // namespace swiftkv::server
