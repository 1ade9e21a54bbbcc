#pragma once
// Chat JSONL -> samples with assistant-only masks (see data.h). Internal to train/.
#include <string>
#include <vector>

#include "train/data.h"

namespace swiftkv::train {

std::vector<Sample> load_chat_samples(const std::string& text, const tokenizer::Tokenizer& tokenizer,
                                      DataStats& stats);

}  // namespace swiftkv::train
