#include "runtime/generator.h"

#include <algorithm>
#include <chrono>

#include "common/error.h"

namespace swiftkv::runtime {

namespace {
double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}
}  // namespace

Generator::Generator(const model::Model& model, const tokenizer::Tokenizer& tokenizer, model::Path path)
    : model_(model), tokenizer_(tokenizer), path_(path), eos_ids_(model.config().eos_token_ids) {
  // Like vLLM: the model's (generation_config) eos ids plus the tokenizer's own.
  for (int32_t id : tokenizer.eos_ids())
    if (std::find(eos_ids_.begin(), eos_ids_.end(), id) == eos_ids_.end()) eos_ids_.push_back(id);
}

GenerationResult Generator::generate(const GenerationRequest& request,
                                     const std::function<void(std::string_view)>& on_text) const {
  if (request.prompt.empty()) throw Error("the prompt is empty (no tokens, not even BOS)");
  if (request.max_tokens < 1)
    throw Error("max_tokens must be >= 1, got " + std::to_string(request.max_tokens));
  request.sampling.validate();
  const auto& config = model_.config();
  const int64_t context = config.max_position_embeddings;
  const int64_t prompt_length = static_cast<int64_t>(request.prompt.size());
  if (prompt_length >= context)
    throw Error("the prompt has " + std::to_string(prompt_length) + " tokens; the context holds " +
                std::to_string(context));
  const int64_t capacity = std::min<int64_t>(context, prompt_length + request.max_tokens);

  model::KvCache cache = model_.make_cache(capacity, path_);
  Sampler sampler(request.sampling, static_cast<int32_t>(config.vocab_size));
  tokenizer::StreamDecoder decoder(tokenizer_, /*skip_special_tokens=*/true);
  decoder.prime(request.prompt);
  StopChecker stop_checker(request.stop);
  GenerationResult result;
  auto emit = [&](const std::string& text) {
    if (text.empty()) return;
    result.text += text;
    if (on_text) on_text(text);
  };

  auto start = std::chrono::steady_clock::now();
  std::vector<float> logits = model_.forward(request.prompt, 0, cache, path_, model::Logits::Last);
  int64_t position = prompt_length;
  for (;;) {
    int32_t token = sampler.sample(logits, request.prompt, result.tokens);
    if (result.tokens.empty()) {
      result.prompt_seconds = seconds_since(start);
      start = std::chrono::steady_clock::now();
    }
    result.tokens.push_back(token);
    if (!request.ignore_eos && std::find(eos_ids_.begin(), eos_ids_.end(), token) != eos_ids_.end()) {
      result.finish_reason = FinishReason::Stop;
      break;
    }
    emit(stop_checker.push(decoder.push(token)));
    if (stop_checker.stopped()) {
      result.finish_reason = FinishReason::Stop;
      break;
    }
    if (static_cast<int64_t>(result.tokens.size()) >= request.max_tokens || position + 1 > capacity) break;
    logits =
        model_.forward(std::span<const int32_t>(&token, 1), position++, cache, path_, model::Logits::Last);
  }
  if (!stop_checker.stopped()) {
    emit(stop_checker.push(decoder.finish()));
    // A stop string completed by the decoder's held-back bytes still ends with "stop".
    if (stop_checker.stopped())
      result.finish_reason = FinishReason::Stop;
    else
      emit(stop_checker.finish());
  }
  result.generation_seconds = seconds_since(start);
  return result;
}

}  // namespace swiftkv::runtime
