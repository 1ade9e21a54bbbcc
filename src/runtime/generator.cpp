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

Generator::Generator(const model::Model& model, const tokenizer::Tokenizer& tokenizer, model::Path path,
                     model::KvDType kv_dtype)
    : model_(model), tokenizer_(tokenizer), path_(path), kv_dtype_(kv_dtype) {}

GenerationResult Generator::generate(EngineRequest request,
                                     const std::function<void(std::string_view)>& on_text) const {
  const int64_t context = model_.config().max_position_embeddings;
  const int64_t prompt_length = static_cast<int64_t>(request.prompt.size());
  if (prompt_length >= context)
    throw Error("the prompt has " + std::to_string(prompt_length) + " tokens; the context holds " +
                std::to_string(context));
  request.max_tokens = static_cast<int32_t>(std::min<int64_t>(request.max_tokens, context - prompt_length));

  // A pool for exactly this request, the prompt prefilled in one step.
  EngineOptions options;
  options.path = path_;
  options.kv_dtype = kv_dtype_;
  options.max_num_seqs = 1;
  options.max_num_batched_tokens = std::max<int64_t>(prompt_length, 1);
  options.enable_prefix_caching = false;
  const int64_t positions = std::max<int64_t>(prompt_length + request.max_tokens - 1, 1);
  const int64_t blocks = (positions + options.block_size - 1) / options.block_size;
  options.kv_cache_bytes = blocks * options.block_size * model_.kv_bytes_per_token(path_, kv_dtype_);
  Engine engine(model_, tokenizer_, options);

  GenerationResult result;
  auto start = std::chrono::steady_clock::now();
  engine.add_request(std::move(request), [&](const RequestOutput& output) {
    if (result.tokens.empty()) {
      result.prompt_seconds = seconds_since(start);
      start = std::chrono::steady_clock::now();
    }
    result.tokens.insert(result.tokens.end(), output.tokens.begin(), output.tokens.end());
    result.text += output.text;
    if (on_text && !output.text.empty()) on_text(output.text);
    if (output.finish_reason != FinishReason::None) result.finish_reason = output.finish_reason;
  });
  while (engine.step()) {
  }
  result.generation_seconds = seconds_since(start);
  return result;
}

}  // namespace swiftkv::runtime
