// `swiftkv serve` end to end on stories260K: concurrent streamed and plain completions give the
// texts the engine gives alone, chat streams, echo + logprobs equal eval's log-probabilities,
// /v1/models, /tokenize, /detokenize, and /metrics moving with the requests.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <thread>

#include "kernels/gemm.h"
#include "model/model.h"
#include "runtime/generator.h"
#include "runtime/scoring.h"
#include "server/server_fixture.h"
#include "tokenizer/tokenizer.h"

namespace swiftkv::testing {
namespace {

const std::vector<std::string> kPrompts = {"Once upon a time", "Tom and Lily went", "The cat sat",
                                           "One day, a"};

class ServeStories : public StoriesServer {
 protected:
  static void SetUpTestSuite() {
    StoriesServer::SetUpTestSuite();
    kernels::set_num_threads(1);
    model::LoadOptions options;
    options.weight_type = kernels::WeightType::F32;
    model_ = model::Model::load(model_dir_, options);
    tokenizer_ = std::make_unique<tokenizer::Tokenizer>(tokenizer::Tokenizer::from_dir(model_dir_));
  }
  static void TearDownTestSuite() {
    model_.reset();
    tokenizer_.reset();
    StoriesServer::TearDownTestSuite();
  }
  // The greedy completion the single-request generator gives.
  static runtime::GenerationResult alone(const std::vector<int32_t>& prompt, int32_t max_tokens) {
    runtime::EngineRequest request;
    request.prompt = prompt;
    request.max_tokens = max_tokens;
    request.sampling.temperature = 0;
    return runtime::Generator(*model_, *tokenizer_, model::Path::SwiftKV).generate(request);
  }

  static std::unique_ptr<model::Model> model_;
  static std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
};
std::unique_ptr<model::Model> ServeStories::model_;
std::unique_ptr<tokenizer::Tokenizer> ServeStories::tokenizer_;

constexpr int32_t kMaxTokens = 40;

TEST_F(ServeStories, ConcurrentStreamingAndPlainClientsGetTheTextsOfTheEngineAlone) {
  std::vector<Json> plain(kPrompts.size());
  std::vector<StreamResult> streamed(kPrompts.size());
  std::vector<std::thread> clients;
  for (size_t i = 0; i < kPrompts.size(); ++i) {
    const Json body = {
        {"model", "stories"}, {"prompt", kPrompts[i]}, {"max_tokens", kMaxTokens}, {"temperature", 0}};
    clients.emplace_back([&, i, body] { plain[i] = post("/v1/completions", body); });
    Json stream_body = body;
    stream_body["stream"] = true;
    stream_body["stream_options"] = {{"include_usage", true}};
    clients.emplace_back([&, i, stream_body] { streamed[i] = post_stream("/v1/completions", stream_body); });
  }
  for (std::thread& thread : clients) thread.join();

  for (size_t i = 0; i < kPrompts.size(); ++i) {
    SCOPED_TRACE(kPrompts[i]);
    const std::vector<int32_t> prompt = tokenizer_->encode(kPrompts[i], true);
    const runtime::GenerationResult expected = alone(prompt, kMaxTokens);
    ASSERT_FALSE(expected.text.empty());

    const Json& response = plain[i];
    EXPECT_TRUE(response["id"].get<std::string>().starts_with("cmpl-"));
    EXPECT_EQ(response["object"], "text_completion");
    EXPECT_EQ(response["model"], "stories");
    EXPECT_TRUE(response["created"].is_number_integer());
    ASSERT_EQ(response["choices"].size(), 1u);
    const Json& choice = response["choices"][0];
    EXPECT_EQ(choice["index"], 0);
    EXPECT_EQ(choice["text"], expected.text);
    EXPECT_EQ(choice["finish_reason"], runtime::finish_reason_name(expected.finish_reason));
    EXPECT_TRUE(choice["logprobs"].is_null());
    const int64_t generated = static_cast<int64_t>(expected.tokens.size());
    EXPECT_EQ(response["usage"], Json({{"prompt_tokens", prompt.size()},
                                       {"completion_tokens", generated},
                                       {"total_tokens", int64_t(prompt.size()) + generated}}));

    const StreamResult& stream = streamed[i];
    EXPECT_EQ(stream.status, 200);
    ASSERT_TRUE(stream.ended());
    const std::vector<Json> chunks = stream.chunks();
    ASSERT_GE(chunks.size(), 3u);  // text, ..., the usage chunk
    std::string text;
    for (size_t c = 0; c + 1 < chunks.size(); ++c) {
      EXPECT_EQ(chunks[c]["id"], chunks[0]["id"]);
      EXPECT_EQ(chunks[c]["object"], "text_completion");
      ASSERT_EQ(chunks[c]["choices"].size(), 1u);
      text += chunks[c]["choices"][0]["text"].get<std::string>();
      const bool last = c + 2 == chunks.size();
      EXPECT_EQ(chunks[c]["choices"][0]["finish_reason"].is_null(), !last);
    }
    EXPECT_EQ(text, expected.text);
    EXPECT_EQ(chunks.back()["choices"], Json::array());  // usage comes last, with no choices
    EXPECT_EQ(chunks.back()["usage"], response["usage"]);
  }
}

TEST_F(ServeStories, PromptListsGiveOneChoicePerPromptInOrder) {
  std::vector<std::vector<int32_t>> prompts;
  for (const std::string& text : kPrompts) prompts.push_back(tokenizer_->encode(text, true));
  const Json response = post("/v1/completions", {{"prompt", prompts}, {"max_tokens", 8}, {"temperature", 0}});
  ASSERT_EQ(response["choices"].size(), prompts.size());
  int64_t prompt_tokens = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(response["choices"][i]["index"], i);
    EXPECT_EQ(response["choices"][i]["text"], alone(prompts[i], 8).text);
    prompt_tokens += int64_t(prompts[i].size());
  }
  EXPECT_EQ(response["usage"]["prompt_tokens"], prompt_tokens);
  // A list of strings is the same as their ids.
  const Json texts = post("/v1/completions", {{"prompt", kPrompts}, {"max_tokens", 8}, {"temperature", 0}});
  for (size_t i = 0; i < prompts.size(); ++i)
    EXPECT_EQ(texts["choices"][i]["text"], response["choices"][i]["text"]);
}

TEST_F(ServeStories, ChatStreamsOpenWithTheRoleAndEndWithUsageThenDone) {
  const Json messages = Json::array({{{"role", "user"}, {"content", "Tell me a story."}}});
  const Json body = {{"model", "stories"}, {"messages", messages}, {"max_tokens", 24}, {"temperature", 0}};
  const Json response = post("/v1/chat/completions", body);
  EXPECT_TRUE(response["id"].get<std::string>().starts_with("chatcmpl-"));
  EXPECT_EQ(response["object"], "chat.completion");
  const Json& message = response["choices"][0]["message"];
  EXPECT_EQ(message["role"], "assistant");
  // The prompt is the rendered template, as /tokenize renders it.
  const Json tokenized = post("/tokenize", {{"messages", messages}});
  EXPECT_EQ(response["usage"]["prompt_tokens"], tokenized["count"]);
  std::vector<int32_t> prompt = tokenized["tokens"].get<std::vector<int32_t>>();
  EXPECT_EQ(message["content"], alone(prompt, 24).text);

  Json stream_body = body;
  stream_body["stream"] = true;
  stream_body["stream_options"] = {{"include_usage", true}};
  const StreamResult stream = post_stream("/v1/chat/completions", stream_body);
  ASSERT_TRUE(stream.ended());
  const std::vector<Json> chunks = stream.chunks();
  ASSERT_GE(chunks.size(), 3u);
  EXPECT_EQ(chunks[0]["choices"][0]["delta"]["role"], "assistant");
  std::string content;
  for (const Json& chunk : chunks) {
    EXPECT_EQ(chunk["object"], "chat.completion.chunk");
    EXPECT_EQ(chunk["id"], chunks[0]["id"]);
    if (!chunk["choices"].empty()) content += chunk["choices"][0]["delta"].value("content", "");
  }
  EXPECT_EQ(content, message["content"]);
  EXPECT_EQ(chunks[chunks.size() - 2]["choices"][0]["finish_reason"],
            response["choices"][0]["finish_reason"]);
  EXPECT_EQ(chunks.back()["choices"], Json::array());
  EXPECT_EQ(chunks.back()["usage"], response["usage"]);
}

// lm-evaluation-harness local-completions' loglikelihood request.
TEST_F(ServeStories, EchoedLogprobsEqualWhatEvalComputes) {
  std::vector<std::vector<int32_t>> prompts;
  for (const std::string& text : kPrompts)
    prompts.push_back(tokenizer_->encode(text + " there was a girl", true));
  const Json body = {{"model", "stories"}, {"prompt", prompts}, {"max_tokens", 1}, {"temperature", 0},
                     {"logprobs", 1},      {"echo", true},      {"seed", 1234}};
  // Twice: the second time the prompts' blocks are in the prefix cache, and must not be used.
  for (int attempt = 0; attempt < 2; ++attempt) {
    const Json response = post("/v1/completions", body);
    ASSERT_EQ(response["choices"].size(), prompts.size());
    for (size_t i = 0; i < prompts.size(); ++i) {
      SCOPED_TRACE(kPrompts[i]);
      const Json& logprobs = response["choices"][i]["logprobs"];
      const std::vector<double> expected = runtime::token_logprobs(*model_, prompts[i], model::Path::SwiftKV);
      const size_t n = prompts[i].size();
      ASSERT_EQ(logprobs["token_logprobs"].size(), n + 1);  // the prompt, then the generated token
      ASSERT_EQ(logprobs["tokens"].size(), n + 1);
      ASSERT_EQ(logprobs["text_offset"].size(), n + 1);
      EXPECT_TRUE(logprobs["token_logprobs"][0].is_null());
      EXPECT_TRUE(logprobs["top_logprobs"][0].is_null());
      for (size_t t = 1; t < n; ++t) {
        EXPECT_NEAR(logprobs["token_logprobs"][t].get<double>(), expected[t - 1], 1e-4) << "token " << t;
        double best = -1e30;
        for (const auto& [text, value] : logprobs["top_logprobs"][t].items())
          best = std::max(best, value.get<double>());
        EXPECT_GE(best + 1e-6, logprobs["token_logprobs"][t].get<double>());
      }
      // Greedy: the generated token is the top alternative (lm-eval's is_greedy check).
      double best = -1e30;
      for (const auto& [text, value] : logprobs["top_logprobs"][n].items())
        best = std::max(best, value.get<double>());
      EXPECT_EQ(logprobs["token_logprobs"][n].get<double>(), best);
      const std::string text = response["choices"][i]["text"];
      EXPECT_TRUE(text.starts_with(kPrompts[i] + " there was a girl")) << text;
    }
  }
  // echo with max_tokens 0: the prompt alone, scored.
  const Json scored =
      post("/v1/completions", {{"prompt", kPrompts[0]}, {"max_tokens", 0}, {"echo", true}, {"logprobs", 0}});
  const std::vector<int32_t> ids = tokenizer_->encode(kPrompts[0], true);
  EXPECT_EQ(scored["choices"][0]["text"], kPrompts[0]);
  EXPECT_EQ(scored["choices"][0]["logprobs"]["tokens"].size(), ids.size());
  EXPECT_EQ(scored["usage"]["completion_tokens"], 0);
  const std::vector<double> expected = runtime::token_logprobs(*model_, ids, model::Path::SwiftKV);
  EXPECT_NEAR(scored["choices"][0]["logprobs"]["token_logprobs"].back().get<double>(), expected.back(), 1e-4);
}

TEST_F(ServeStories, ModelsTokenizeAndDetokenize) {
  auto models = client()->Get("/v1/models");
  ASSERT_TRUE(models);
  const Json list = Json::parse(models->body);
  EXPECT_EQ(list["object"], "list");
  ASSERT_EQ(list["data"].size(), 1u);
  EXPECT_EQ(list["data"][0]["id"], "stories");
  EXPECT_EQ(list["data"][0]["object"], "model");
  EXPECT_EQ(list["data"][0]["max_model_len"], model_->config().max_position_embeddings);

  const Json tokenized = post("/tokenize", {{"prompt", kPrompts[0]}, {"return_token_strs", true}});
  const std::vector<int32_t> ids = tokenizer_->encode(kPrompts[0], true);
  EXPECT_EQ(tokenized["tokens"], Json(ids));
  EXPECT_EQ(tokenized["count"], ids.size());
  EXPECT_EQ(tokenized["max_model_len"], model_->config().max_position_embeddings);
  EXPECT_EQ(tokenized["token_strs"][1], tokenizer_->id_to_token(ids[1]));
  EXPECT_EQ(post("/tokenize", {{"prompt", kPrompts[0]}, {"add_special_tokens", false}})["tokens"],
            Json(tokenizer_->encode(kPrompts[0], false)));
  EXPECT_EQ(post("/detokenize", {{"tokens", ids}})["prompt"], tokenizer_->decode(ids));
}

TEST_F(ServeStories, MetricsMoveWithRequests) {
  const std::string l = "{model_name=\"stories\"";
  auto value = [&](const std::string& text, const std::string& series) {
    return prometheus_sample(text, series + l + "}");
  };
  const std::string before = metrics_text(*server_);
  const Json response =
      post("/v1/completions", {{"prompt", kPrompts[1]}, {"max_tokens", 12}, {"temperature", 0}});
  const std::string after = metrics_text(*server_);
  auto moved = [&](const std::string& series) { return value(after, series) - value(before, series); };
  const int64_t prompt_tokens = response["usage"]["prompt_tokens"];
  const int64_t completion_tokens = response["usage"]["completion_tokens"];
  ASSERT_GT(completion_tokens, 1);
  EXPECT_EQ(moved("swiftkv:prompt_tokens_total"), prompt_tokens);
  EXPECT_GT(moved("swiftkv:prompt_tokens_computed_total"), 0);  // prefix-cache hits excluded
  EXPECT_LE(moved("swiftkv:prompt_tokens_computed_total"), prompt_tokens);
  EXPECT_EQ(moved("swiftkv:generation_tokens_total"), completion_tokens);
  const std::string reason = "swiftkv:request_success_total" + l + ",finished_reason=\"" +
                             response["choices"][0]["finish_reason"].get<std::string>() + "\"}";
  EXPECT_EQ(prometheus_sample(after, reason) - prometheus_sample(before, reason), 1);
  EXPECT_EQ(moved("swiftkv:time_to_first_token_seconds_count"), 1);
  EXPECT_EQ(moved("swiftkv:time_per_output_token_seconds_count"), 1);
  EXPECT_EQ(moved("swiftkv:e2e_request_latency_seconds_count"), 1);
  EXPECT_GT(moved("swiftkv:e2e_request_latency_seconds_sum"), 0);
  EXPECT_EQ(value(after, "swiftkv:num_requests_running"), 0);
  EXPECT_EQ(value(after, "swiftkv:num_requests_waiting"), 0);
  EXPECT_EQ(value(after, "swiftkv:kv_cache_usage_perc"), 0);  // finished requests hold no blocks
}

// As in vLLM: stop_reason is the stop string that ended a choice, and null when the model's
// eos did (greedy from BOS, stories260K ends its story with an eos id after 345 tokens).
TEST_F(ServeStories, StopReasonIsNullAtEosAndTheStopStringOtherwise) {
  const Json at_eos = post("/v1/completions", {{"prompt", {1}}, {"max_tokens", 500}, {"temperature", 0}});
  const Json& choice = at_eos["choices"][0];
  EXPECT_EQ(choice["finish_reason"], "stop");
  ASSERT_TRUE(choice.contains("stop_reason"));
  EXPECT_TRUE(choice["stop_reason"].is_null()) << choice["stop_reason"];
  const std::string stop = choice["text"].get<std::string>().substr(20, 5);
  const Json at_string =
      post("/v1/completions", {{"prompt", {1}}, {"max_tokens", 500}, {"temperature", 0}, {"stop", stop}});
  EXPECT_EQ(at_string["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(at_string["choices"][0]["stop_reason"], stop);
}

}  // namespace
}  // namespace swiftkv::testing
