#include "train/data.h"

#include <algorithm>
#include <sstream>

#include "common/error.h"
#include "common/files.h"
#include "tokenizer/tokenizer.h"
#include "train/data_chat.h"

namespace swiftkv::train {

namespace {

bool blank(std::string_view line) {
  return std::all_of(line.begin(), line.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

std::string_view trim(std::string_view text) {
  const char* space = " \t\r\n";
  const size_t begin = text.find_first_not_of(space);
  if (begin == std::string_view::npos) return {};
  const size_t end = text.find_last_not_of(space);
  return text.substr(begin, end - begin + 1);
}

}  // namespace

std::string DataStats::summary() const {
  std::ostringstream out;
  out << samples << " samples";
  if (skipped_bad_json) out << ", skipped " << skipped_bad_json << " unparsable JSONL lines";
  if (skipped_no_assistant)
    out << ", skipped " << skipped_no_assistant << " conversations without an assistant turn";
  if (skipped_invalid_utf8) out << ", skipped " << skipped_invalid_utf8 << " samples with invalid UTF-8";
  if (skipped_template_errors)
    out << ", skipped " << skipped_template_errors << " conversations the chat template refused";
  if (dropped_tail_tokens) out << ", dropped " << dropped_tail_tokens << " tail tokens";
  return out.str();
}

std::vector<std::string> split_documents(const std::string& text) {
  std::vector<std::string> documents;
  std::string current;
  size_t start = 0;
  auto flush = [&] {
    std::string_view document = trim(current);
    if (!document.empty()) documents.emplace_back(document);
    current.clear();
  };
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + start, end - start);
    if (blank(line)) {
      flush();
    } else {
      if (!current.empty()) current += '\n';
      current += line;
    }
    start = end + 1;
  }
  flush();
  return documents;
}

std::vector<Sample> load_samples(const std::filesystem::path& path, const tokenizer::Tokenizer& tokenizer,
                                 DataFormat format, DataStats& stats) {
  const std::string text = read_text_file(path);
  if (trim(text).empty()) throw Error("data file " + path.string() + " is empty");
  if (format == DataFormat::Auto) {
    const bool jsonl_name = path.extension() == ".jsonl";
    format = jsonl_name || trim(text).front() == '{' ? DataFormat::Chat : DataFormat::Text;
  }
  std::vector<Sample> samples;
  if (format == DataFormat::Chat) {
    samples = load_chat_samples(text, tokenizer, stats);
  } else {
    for (const std::string& document : split_documents(text)) {
      if (tokenizer::find_invalid_utf8(document) != std::string::npos) {
        ++stats.skipped_invalid_utf8;
        continue;
      }
      Sample sample;
      sample.tokens = tokenizer.encode(document, /*add_special_tokens=*/true);
      if (sample.tokens.empty()) continue;
      sample.mask.assign(sample.tokens.size(), 1);
      samples.push_back(std::move(sample));
    }
  }
  stats.samples = int64_t(samples.size());
  if (samples.empty()) {
    throw Error("data file " + path.string() + " has no usable sample (" + stats.summary() + ")");
  }
  return samples;
}

PackedData pack_samples(const std::vector<Sample>& samples, int64_t seq_len, DataStats& stats,
                        const std::string& source) {
  if (seq_len < 2) throw Error("--seq-len must be at least 2");
  PackedData packed;
  packed.seq_len = seq_len;
  for (const Sample& sample : samples) {
    packed.tokens.insert(packed.tokens.end(), sample.tokens.begin(), sample.tokens.end());
    packed.mask.insert(packed.mask.end(), sample.mask.begin(), sample.mask.end());
  }
  const int64_t total = int64_t(packed.tokens.size());
  const int64_t kept = total / seq_len * seq_len;
  if (kept == 0) {
    throw Error(source + " has " + std::to_string(total) + " tokens, fewer than one sequence of --seq-len " +
                std::to_string(seq_len));
  }
  stats.dropped_tail_tokens += total - kept;
  packed.tokens.resize(size_t(kept));
  packed.mask.resize(size_t(kept));
  return packed;
}

std::vector<Sample> split_held_out(std::vector<Sample>& samples, double fraction) {
  if (fraction <= 0.0 || samples.size() < 2) return {};
  size_t count = size_t(double(samples.size()) * fraction);
  count = std::clamp<size_t>(count, 1, samples.size() - 1);
  std::vector<Sample> held_out(std::make_move_iterator(samples.end() - std::ptrdiff_t(count)),
                               std::make_move_iterator(samples.end()));
  samples.resize(samples.size() - count);
  return held_out;
}

}  // namespace swiftkv::train
