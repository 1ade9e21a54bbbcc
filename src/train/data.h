#pragma once
// Distillation data: plain text or chat JSONL, tokenized and packed into fixed-length
// sequences with a per-token loss mask. No libtorch here (tests and the CLI use it freely).
//
// Packing (both formats): samples are tokenized one by one and appended to ONE token stream
// (with their masks); the stream is cut into consecutive sequences of exactly seq_len tokens;
// a tail shorter than seq_len is dropped. Positions restart at 0 in every sequence and
// attention may cross a sample boundary inside a sequence (each sample starts with BOS, so
// the model sees where a new document starts).
//  - Plain text: documents are separated by blank lines; each document is encoded with the
//    tokenizer's special tokens (so it starts with BOS); mask 1 on every token.
//  - Chat JSONL (".jsonl" files, or any file whose first non-blank character is '{'): one
//    {"messages": [...]} object per line, rendered with the tokenizer's chat template; mask 1
//    only on assistant tokens (found by rendering each assistant turn's prefix with
//    add_generation_prompt and diffing against the prefix including that turn).
// Bad input never crashes: an empty file or one with no usable sample is an error naming the
// file; a JSONL line that does not parse, a conversation without an assistant turn and text
// with invalid UTF-8 are skipped and counted in DataStats (the CLI prints the counts).
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace swiftkv::tokenizer {
class Tokenizer;
}

namespace swiftkv::train {

struct PackedData {
  int64_t seq_len = 0;
  std::vector<int32_t> tokens;  // num_sequences * seq_len
  std::vector<uint8_t> mask;    // 1 where the distillation loss counts
  int64_t num_sequences() const { return seq_len > 0 ? int64_t(tokens.size()) / seq_len : 0; }
};

struct DataStats {
  int64_t samples = 0;                  // documents or conversations used
  int64_t skipped_bad_json = 0;         // JSONL lines that do not parse / are not {"messages": [...]}
  int64_t skipped_no_assistant = 0;     // conversations with no assistant turn
  int64_t skipped_invalid_utf8 = 0;     // documents / lines with invalid UTF-8
  int64_t skipped_template_errors = 0;  // conversations the chat template refused
  int64_t dropped_tail_tokens = 0;      // tokens after the last full sequence
  std::string summary() const;          // one line for the progress output
};

enum class DataFormat { Auto, Text, Chat };

// One loaded sample before packing.
struct Sample {
  std::vector<int32_t> tokens;
  std::vector<uint8_t> mask;
};

// Reads and tokenizes every sample of `path`. Throws swiftkv::Error when the file cannot be
// read, is empty, or yields no sample.
std::vector<Sample> load_samples(const std::filesystem::path& path, const tokenizer::Tokenizer& tokenizer,
                                 DataFormat format, DataStats& stats);

// Packs samples (in order) into sequences of seq_len tokens (see above). Throws when there
// are fewer tokens than one sequence.
PackedData pack_samples(const std::vector<Sample>& samples, int64_t seq_len, DataStats& stats,
                        const std::string& source);

// Splits off the last `fraction` of the samples (at least one when fraction > 0 and there
// are two or more) for held-out evaluation. Returns the held-out part; `samples` keeps the rest.
std::vector<Sample> split_held_out(std::vector<Sample>& samples, double fraction);

// Plain-text documents of a text: paragraphs separated by one or more blank lines, trimmed.
std::vector<std::string> split_documents(const std::string& text);

}  // namespace swiftkv::train
