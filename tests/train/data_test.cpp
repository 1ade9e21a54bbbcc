// Distillation data: packing, held-out split, chat masks, and bad input (clear errors or
// skipped-with-a-count, never a crash).
#include "train/data.h"

#include <gtest/gtest.h>

#include <fstream>

#include "common/error.h"
#include "common/files.h"
#include "tokenizer/tokenizer.h"
#include "train_test_util.h"

namespace swiftkv::train {
namespace {

namespace fs = std::filesystem;
using swiftkv::testing::train_temp_dir;

void write(const fs::path& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

// stories260K's tokenizer with a small chat template added.
fs::path chat_model_dir() {
  const fs::path dir = train_temp_dir("train_chat_tokenizer");
  const fs::path source = swiftkv::testing::stories_swiftkv(3);
  fs::copy_file(source / "tokenizer.json", dir / "tokenizer.json");
  nlohmann::json config = read_json_file(source / "tokenizer_config.json");
  config["chat_template"] =
      "{{ bos_token }}{% for m in messages %}{% if m.role == 'assistant' %}Bot: {{ m.content }}{{ eos_token "
      "}}"
      "{% else %}{{ m.role }}: {{ m.content }}\n{% endif %}{% endfor %}{% if add_generation_prompt %}Bot: {% "
      "endif %}";
  write_json_file(dir / "tokenizer_config.json", config);
  return dir;
}

TEST(Data, SplitsDocumentsOnBlankLinesAndPacksWithBos) {
  EXPECT_EQ(split_documents("a b\nc\n\n \n\nd\n"), (std::vector<std::string>{"a b\nc", "d"}));
  const auto tokenizer = tokenizer::Tokenizer::from_dir(swiftkv::testing::stories_swiftkv(3));
  const fs::path dir = train_temp_dir("train_data_pack");
  write(dir / "data.txt", "Once upon a time there was a cat.\n\nThe dog ran.\n\nTom was happy.\n");
  DataStats stats;
  std::vector<Sample> samples = load_samples(dir / "data.txt", tokenizer, DataFormat::Auto, stats);
  ASSERT_EQ(samples.size(), 3u);
  for (const Sample& sample : samples) {
    EXPECT_EQ(sample.tokens.front(), *tokenizer.bos_id());
    EXPECT_EQ(sample.mask, std::vector<uint8_t>(sample.tokens.size(), 1));
  }
  const std::vector<Sample> held_out = split_held_out(samples, 0.3);
  EXPECT_EQ(held_out.size(), 1u);
  EXPECT_EQ(samples.size(), 2u);
  const size_t total = samples[0].tokens.size() + samples[1].tokens.size();
  const PackedData packed = pack_samples(samples, 4, stats, "data");
  EXPECT_EQ(packed.num_sequences(), int64_t(total / 4));
  EXPECT_EQ(stats.dropped_tail_tokens, int64_t(total % 4));
  // The stream is the documents in order, cut into consecutive sequences.
  EXPECT_TRUE(std::equal(samples[0].tokens.begin(), samples[0].tokens.end(), packed.tokens.begin()));
  EXPECT_THROW(pack_samples(samples, int64_t(total) + 1, stats, "data"), Error);
}

TEST(Data, BadTextGivesClearErrorsOrCountedSkips) {
  const auto tokenizer = tokenizer::Tokenizer::from_dir(swiftkv::testing::stories_swiftkv(3));
  const fs::path dir = train_temp_dir("train_data_bad_text");
  DataStats stats;
  write(dir / "empty.txt", "");
  try {
    load_samples(dir / "empty.txt", tokenizer, DataFormat::Auto, stats);
    FAIL() << "an empty file was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is empty"), std::string::npos) << e.what();
  }
  write(dir / "blank.txt", "\n \n\n");
  EXPECT_THROW(load_samples(dir / "blank.txt", tokenizer, DataFormat::Auto, stats), Error);
  EXPECT_THROW(load_samples(dir / "missing.txt", tokenizer, DataFormat::Auto, stats), Error);
  write(dir / "utf8.txt", "A good story.\n\nBroken \xff\xfe bytes.\n\nAnother story.\n");
  stats = {};
  EXPECT_EQ(load_samples(dir / "utf8.txt", tokenizer, DataFormat::Auto, stats).size(), 2u);
  EXPECT_EQ(stats.skipped_invalid_utf8, 1);
  EXPECT_NE(stats.summary().find("invalid UTF-8"), std::string::npos);
  write(dir / "all_bad.txt", "\xff\n");
  EXPECT_THROW(load_samples(dir / "all_bad.txt", tokenizer, DataFormat::Text, stats), Error);
}

TEST(Data, ChatMasksAssistantTokensAndSkipsBadLines) {
  const fs::path model = chat_model_dir();
  const auto tokenizer = tokenizer::Tokenizer::from_dir(model);
  const fs::path dir = train_temp_dir("train_data_chat");
  write(dir / "chat.jsonl",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi there\"}, {\"role\": \"assistant\", "
        "\"content\": "
        "\"Hello friend\"}, {\"role\": \"user\", \"content\": \"Tell a story\"}, {\"role\": \"assistant\", "
        "\"content\": \"Once upon a time\"}]}\n"
        "{\"messages\": [{\"role\": \"user\", \"content\": \"broken\"\n"
        "{\"messages\": [{\"role\": \"user\", \"content\": \"no answer\"}]}\n"
        "[1, 2, 3]\n"
        "{\"messages\": [{\"role\": \"user\", \"content\": \"bad \xff\"}, {\"role\": \"assistant\", "
        "\"content\": "
        "\"x\"}]}\n"
        "\n");
  DataStats stats;
  const std::vector<Sample> samples = load_samples(dir / "chat.jsonl", tokenizer, DataFormat::Auto, stats);
  ASSERT_EQ(samples.size(), 1u);
  EXPECT_EQ(stats.skipped_bad_json, 2);
  EXPECT_EQ(stats.skipped_no_assistant, 1);
  EXPECT_EQ(stats.skipped_invalid_utf8, 1);
  const Sample& sample = samples[0];
  ASSERT_EQ(sample.tokens.size(), sample.mask.size());
  // The masked tokens are exactly the two answers with their end-of-turn token.
  std::vector<int32_t> assistant, other;
  for (size_t i = 0; i < sample.tokens.size(); ++i)
    (sample.mask[i] ? assistant : other).push_back(sample.tokens[i]);
  // (SentencePiece puts its dummy-prefix space before each separately encoded segment.)
  const std::string answers = tokenizer.decode(assistant);
  EXPECT_TRUE(answers == "Hello friend</s>Once upon a time</s>" ||
              answers == "Hello friend</s> Once upon a time</s>")
      << answers;
  EXPECT_NE(tokenizer.decode(other).find("user: Tell a story"), std::string::npos);
  EXPECT_EQ(sample.tokens.front(), *tokenizer.bos_id());

  write(dir / "none.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"no answer\"}]}\nnot json\n");
  stats = {};
  try {
    load_samples(dir / "none.jsonl", tokenizer, DataFormat::Auto, stats);
    FAIL() << "a file without usable conversations was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no usable sample"), std::string::npos) << e.what();
  }
  // A tokenizer without a chat template: a clear error, not a crash.
  const auto plain = tokenizer::Tokenizer::from_dir(swiftkv::testing::stories_swiftkv(3));
  EXPECT_THROW(load_samples(dir / "chat.jsonl", plain, DataFormat::Chat, stats), Error);
}

TEST(Data, DistillCommandReportsBadDataAndExitsOne) {
  const fs::path dir = train_temp_dir("train_data_cli");
  write(dir / "empty.txt", "");
  const int status = swiftkv::testing::run_swiftkv(
      "distill -m " + swiftkv::testing::stories_swiftkv(3).string() + " --data " +
          (dir / "empty.txt").string() + " --out " + (dir / "out").string(),
      dir / "log.txt");
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_NE(swiftkv::testing::read_file(dir / "log.txt").find("is empty"), std::string::npos)
      << swiftkv::testing::read_file(dir / "log.txt");
}

}  // namespace
}  // namespace swiftkv::train
