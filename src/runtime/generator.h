#pragma once
// One request at a time: prefill the prompt as one batch, then decode token by token,
// sampling, streaming text and stopping on eos ids, stop strings or max_tokens.
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "model/model.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

namespace swiftkv::runtime {

struct GenerationRequest {
  std::vector<int32_t> prompt;  // token ids, BOS included when wanted
  int32_t max_tokens = 256;
  SamplingParams sampling;
  std::vector<std::string> stop;  // stop strings (not included in the output)
  bool ignore_eos = false;
};

enum class FinishReason { Stop, Length };

struct GenerationResult {
  std::vector<int32_t> tokens;  // generated ids (the eos id that stopped it included)
  std::string text;             // what was streamed
  FinishReason finish_reason = FinishReason::Length;
  double prompt_seconds = 0, generation_seconds = 0;  // prefill, then decode of the other tokens
};

class Generator {
 public:
  Generator(const model::Model& model, const tokenizer::Tokenizer& tokenizer, model::Path path);
  // on_text receives each piece of text as soon as it is complete UTF-8 and cannot be part of a stop string.
  GenerationResult generate(const GenerationRequest& request,
                            const std::function<void(std::string_view)>& on_text = {}) const;

 private:
  const model::Model& model_;
  const tokenizer::Tokenizer& tokenizer_;
  model::Path path_;
  std::vector<int32_t> eos_ids_;
};

}  // namespace swiftkv::runtime
