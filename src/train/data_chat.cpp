#include "train/data_chat.h"

#include "common/error.h"

namespace swiftkv::train {

std::vector<Sample> load_chat_samples(const std::string&, const tokenizer::Tokenizer&, DataStats&) {
  throw Error("chat JSONL data is not supported yet");
}

}  // namespace swiftkv::train
