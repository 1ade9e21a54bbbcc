// Prompts of `swiftkv bench serve`: random token ids, random text of an exact token count (as vLLM's
// random dataset: sampled ids decoded, re-encoded and adjusted), or a text file's paragraphs.
#include <algorithm>
#include <random>

#include "common/error.h"
#include "runtime/eval.h"
#include "server/load_generator.h"
#include "tokenizer/tokenizer.h"

namespace swiftkv::server {

namespace {

// A stream of its own, so that the arrival times (seeded by the same --seed) do not change with the prompts.
std::mt19937_64 prompt_rng(uint64_t seed) {
  std::seed_seq sequence{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), 0x70726f6du};
  return std::mt19937_64(sequence);
}

std::vector<int32_t> random_ids(std::mt19937_64& rng, int64_t count, int32_t min_id, int32_t max_id) {
  std::uniform_int_distribution<int32_t> id(min_id, max_id);
  std::vector<int32_t> ids(static_cast<size_t>(count));
  for (int32_t& token : ids) token = id(rng);
  return ids;
}

// Random text that a tokenizer encodes (without special tokens) to a chosen number of tokens.
class TextSampler {
 public:
  explicit TextSampler(const tokenizer::Tokenizer& tokenizer) : tokenizer_(tokenizer) {
    for (int32_t id = 0; id < tokenizer.vocab_size(); ++id)
      if (!tokenizer.is_special(id)) ids_.push_back(id);
    if (ids_.empty()) throw Error("the tokenizer has no ordinary tokens to sample prompts from");
  }

  int64_t count(const std::string& text) const {
    return static_cast<int64_t>(tokenizer_.encode(text, /*add_special_tokens=*/false).size());
  }

  std::string decode(const std::vector<int32_t>& ids) const {
    return tokenizer::sanitize_utf8(tokenizer_.decode(ids));  // sampled byte tokens can split a character
  }

  // `prefix` (a text and its token count) followed by random text, `body_tokens` more in all when
  // the re-encoding converges (it nearly always does within a few rounds); the prompt's actual
  // count otherwise.
  Prompt sample(const Prompt& prefix, int64_t body_tokens, std::mt19937_64& rng) const {
    const std::string& prefix_text = std::get<std::string>(prefix.content);
    const int64_t target = prefix.num_tokens + body_tokens;
    std::vector<int32_t> body = draw(body_tokens, rng);
    for (int round = 0;; ++round) {
      std::string text = prefix_text + decode(body);
      const int64_t tokens = count(text);
      if (tokens == target || round == kMaxRounds || (tokens > target && body.empty()))
        return {std::move(text), tokens};
      if (tokens > target) {
        body.resize(body.size() - std::min<size_t>(body.size(), static_cast<size_t>(tokens - target)));
      } else {
        const std::vector<int32_t> more = draw(target - tokens, rng);
        body.insert(body.end(), more.begin(), more.end());
      }
    }
  }

 private:
  static constexpr int kMaxRounds = 10;
  std::vector<int32_t> draw(int64_t count, std::mt19937_64& rng) const {
    std::uniform_int_distribution<size_t> index(0, ids_.size() - 1);
    std::vector<int32_t> drawn(static_cast<size_t>(count));
    for (int32_t& id : drawn) id = ids_[index(rng)];
    return drawn;
  }
  const tokenizer::Tokenizer& tokenizer_;
  std::vector<int32_t> ids_;
};

// `count` paragraphs of a text file ("\n\n"-separated), shuffled and repeated as needed.
std::vector<std::string> dataset_texts(const std::string& path, size_t count, std::mt19937_64& rng) {
  std::string text;
  try {
    text = runtime::read_eval_text(path);
  } catch (const Error& error) {
    throw Error(std::string("--dataset: ") + error.what());
  }
  std::vector<std::string> paragraphs;
  for (size_t begin = 0; begin < text.size();) {
    size_t end = text.find("\n\n", begin);
    if (end == std::string::npos) end = text.size();
    std::string paragraph = text.substr(begin, end - begin);
    if (paragraph.find_first_not_of(" \t\r\n") != std::string::npos)
      paragraphs.push_back(std::move(paragraph));
    begin = end + 2;
  }
  if (paragraphs.empty()) throw Error("--dataset " + path + " has no paragraphs");
  std::shuffle(paragraphs.begin(), paragraphs.end(), rng);
  std::vector<std::string> texts;
  for (size_t i = 0; i < count; ++i) texts.push_back(paragraphs[i % paragraphs.size()]);
  return texts;
}

std::vector<Prompt> token_id_prompts(const PromptOptions& options, std::mt19937_64& rng) {
  const std::vector<int32_t> prefix =
      random_ids(rng, options.prefix_len, options.min_token_id, options.max_token_id);
  std::vector<Prompt> prompts;
  for (int64_t i = 0; i < options.num_prompts; ++i) {
    std::vector<int32_t> ids = prefix;
    const std::vector<int32_t> own =
        random_ids(rng, options.input_len, options.min_token_id, options.max_token_id);
    ids.insert(ids.end(), own.begin(), own.end());
    const auto tokens = static_cast<int64_t>(ids.size());
    prompts.push_back({std::move(ids), tokens});
  }
  return prompts;
}

std::vector<Prompt> tokenizer_prompts(const PromptOptions& options, std::mt19937_64& rng) {
  const auto tokenizer = tokenizer::Tokenizer::from_dir(options.tokenizer_dir);
  const TextSampler sampler(tokenizer);
  Prompt prefix{std::string(), 0};
  if (options.prefix_len > 0) prefix = sampler.sample(prefix, options.prefix_len, rng);
  const std::string& prefix_text = std::get<std::string>(prefix.content);
  std::vector<Prompt> prompts;
  if (options.dataset_path.empty()) {
    for (int64_t i = 0; i < options.num_prompts; ++i)
      prompts.push_back(sampler.sample(prefix, options.input_len, rng));
    return prompts;
  }
  for (const std::string& paragraph :
       dataset_texts(options.dataset_path, static_cast<size_t>(options.num_prompts), rng)) {
    std::vector<int32_t> ids = tokenizer.encode(paragraph, /*add_special_tokens=*/false);
    if (static_cast<int64_t>(ids.size()) > options.input_len)
      ids.resize(static_cast<size_t>(options.input_len));
    std::string text = prefix_text + sampler.decode(ids);
    const int64_t tokens = sampler.count(text);
    prompts.push_back({std::move(text), tokens});
  }
  return prompts;
}

void check(const PromptOptions& options) {
  if (options.num_prompts < 1) throw Error("--num-prompts must be at least 1");
  if (options.input_len < 1) throw Error("--input-len must be at least 1");
  if (options.prefix_len < 0) throw Error("--prefix-len must not be negative");
  if (options.min_token_id < 0 || options.min_token_id > options.max_token_id)
    throw Error("the prompt token ids [" + std::to_string(options.min_token_id) + ", " +
                std::to_string(options.max_token_id) + "] are not a range of non-negative ids");
  if (!options.dataset_path.empty() && options.tokenizer_dir.empty() && options.prefix_len > 0)
    throw Error("--prefix-len with --dataset needs --tokenizer (the prefix is measured in tokens)");
}

}  // namespace

std::vector<Prompt> make_prompts(const PromptOptions& options) {
  check(options);
  std::mt19937_64 rng = prompt_rng(options.seed);
  if (!options.tokenizer_dir.empty()) return tokenizer_prompts(options, rng);
  if (options.dataset_path.empty()) return token_id_prompts(options, rng);
  std::vector<Prompt> prompts;  // dataset text as it is: the server's usage reports its length
  for (std::string& text : dataset_texts(options.dataset_path, static_cast<size_t>(options.num_prompts), rng))
    prompts.push_back({std::move(text), 0});
  return prompts;
}

}  // namespace swiftkv::server
