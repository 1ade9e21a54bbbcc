#include "runtime/eval.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "common/error.h"
#include "common/files.h"
#include "runtime/scoring.h"

namespace swiftkv::runtime {
namespace {

// log(sum(exp(row))) in float64, shifted by the row's max for stability.
double log_sum_exp(std::span<const float> row) {
  const double max_logit = *std::max_element(row.begin(), row.end());
  double sum = 0;
  for (float logit : row) sum += std::exp(static_cast<double>(logit) - max_logit);
  return max_logit + std::log(sum);
}

// KL(softmax(teacher) || softmax(student)) of one position, in float64.
double kl_divergence(std::span<const float> teacher, std::span<const float> student) {
  const double teacher_lse = log_sum_exp(teacher), student_lse = log_sum_exp(student);
  double kl = 0;
  for (size_t v = 0; v < teacher.size(); ++v) {
    const double teacher_logprob = static_cast<double>(teacher[v]) - teacher_lse;
    const double student_logprob = static_cast<double>(student[v]) - student_lse;
    kl += std::exp(teacher_logprob) * (teacher_logprob - student_logprob);
  }
  return kl;
}

size_t argmax(std::span<const float> row) {
  return static_cast<size_t>(std::max_element(row.begin(), row.end()) - row.begin());
}

}  // namespace

std::string read_eval_text(const std::filesystem::path& path) {
  std::error_code error;
  if (!std::filesystem::exists(path, error)) throw Error("eval data " + path.string() + " does not exist");
  if (std::filesystem::is_directory(path, error))
    throw Error("eval data " + path.string() + " is a directory, expected a text file");
  std::string text = read_text_file(path);
  if (text.empty()) throw Error("eval data " + path.string() + " is empty");
  const size_t bad = tokenizer::find_invalid_utf8(text);
  if (bad != std::string::npos) {
    const int64_t line = 1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(bad), '\n');
    char byte[8];
    std::snprintf(byte, sizeof byte, "0x%02x", static_cast<unsigned char>(text[bad]));
    throw Error("eval data " + path.string() + " is not valid UTF-8: byte " + byte + " at offset " +
                std::to_string(bad) + " (line " + std::to_string(line) + ")");
  }
  return text;
}

std::vector<std::vector<int32_t>> eval_sequences(const tokenizer::Tokenizer& tokenizer, std::string_view text,
                                                 int64_t max_len) {
  if (max_len < 2)
    throw Error("--max-len must be at least 2 (a sequence predicts its tokens after the first), got " +
                std::to_string(max_len));
  std::vector<std::vector<int32_t>> sequences;
  size_t begin = 0;
  while (begin <= text.size()) {
    size_t end = text.find("\n\n", begin);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view paragraph = text.substr(begin, end - begin);
    begin = end + 2;
    if (paragraph.empty()) continue;
    std::vector<int32_t> ids = tokenizer.encode(paragraph, /*add_special_tokens=*/true);
    if (static_cast<int64_t>(ids.size()) > max_len) ids.resize(static_cast<size_t>(max_len));
    if (ids.size() >= 2) sequences.push_back(std::move(ids));
  }
  return sequences;
}

EvalResult evaluate(const ScoredModel& model, const std::vector<std::vector<int32_t>>& sequences,
                    const std::optional<ScoredModel>& teacher, const EvalProgress& progress) {
  const auto start = std::chrono::steady_clock::now();
  const size_t vocab = static_cast<size_t>(model.model.config().vocab_size);
  if (teacher && static_cast<size_t>(teacher->model.config().vocab_size) != vocab)
    throw Error("the teacher's vocabulary (" + std::to_string(teacher->model.config().vocab_size) +
                " tokens) differs from the model's (" + std::to_string(vocab) +
                "); comparing next-token distributions needs one vocabulary");
  EvalResult result;
  result.has_teacher = teacher.has_value();
  double nll = 0, teacher_nll = 0, kl = 0;
  int64_t agree = 0;
  for (const std::vector<int32_t>& ids : sequences) {
    if (ids.size() < 2) continue;
    const std::span<const int32_t> inputs = std::span<const int32_t>(ids).first(ids.size() - 1);
    const std::vector<float> logits = sequence_logits(model.model, inputs, model.path, model.kv_dtype);
    std::vector<float> teacher_logits;
    if (teacher) teacher_logits = sequence_logits(teacher->model, inputs, teacher->path, teacher->kv_dtype);
    for (size_t t = 0; t < inputs.size(); ++t) {
      const std::span<const float> row = std::span<const float>(logits).subspan(t * vocab, vocab);
      nll -= log_softmax_at(row, ids[t + 1]);
      if (!teacher) continue;
      const std::span<const float> teacher_row =
          std::span<const float>(teacher_logits).subspan(t * vocab, vocab);
      teacher_nll -= log_softmax_at(teacher_row, ids[t + 1]);
      kl += kl_divergence(teacher_row, row);
      agree += argmax(row) == argmax(teacher_row);
    }
    result.tokens += static_cast<int64_t>(inputs.size());
    ++result.sequences;
    if (progress) progress(result.sequences, static_cast<int64_t>(sequences.size()), result.tokens);
  }
  if (result.tokens == 0) throw Error("nothing to score: no paragraph of the text has 2 or more tokens");
  const double count = static_cast<double>(result.tokens);
  result.mean_nll = nll / count;
  result.perplexity = std::exp(result.mean_nll);
  if (teacher) {
    result.teacher_mean_nll = teacher_nll / count;
    result.teacher_perplexity = std::exp(result.teacher_mean_nll);
    result.mean_kl = kl / count;
    result.top1_agreement = static_cast<double>(agree) / count;
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace swiftkv::runtime
