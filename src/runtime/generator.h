#pragma once
// One request at a time, synchronously: an Engine of its own runs it (prompt prefilled as one
// batch, then decoded token by token; sampling, streamed text and stopping on eos ids, stop
// strings or max_tokens are the engine's), so `generate` and serving share one decode loop.
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "model/model.h"
#include "runtime/engine.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

namespace swiftkv::runtime {

struct GenerationResult {
  std::vector<int32_t> tokens;                        // generated ids (the eos id that stopped it included)
  std::string text;                                   // what was streamed
  FinishReason finish_reason = FinishReason::Length;  // Stop or Length
  double prompt_seconds = 0, generation_seconds = 0;  // prefill, then decode of the other tokens
};

class Generator {
 public:
  Generator(const model::Model& model, const tokenizer::Tokenizer& tokenizer, model::Path path,
            model::KvDType kv_dtype = model::KvDType::F32);
  // on_text receives each piece of text as soon as it is complete UTF-8 and cannot be part of a
  // stop string. max_tokens is cut to what the context holds after the prompt.
  GenerationResult generate(EngineRequest request,
                            const std::function<void(std::string_view)>& on_text = {}) const;

 private:
  const model::Model& model_;
  const tokenizer::Tokenizer& tokenizer_;
  model::Path path_;
  model::KvDType kv_dtype_;
};

}  // namespace swiftkv::runtime
