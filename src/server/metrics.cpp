#include "server/metrics.h"

#include <algorithm>
#include <charconv>

namespace swiftkv::server {

namespace {

// vLLM's bucket bounds, with finer ones below its smallest: a small model on a CPU answers in
// milliseconds.
const std::vector<double> kTimeToFirstTokenBuckets = {0.001, 0.005, 0.01, 0.02,  0.04,  0.06,  0.08, 0.1,
                                                      0.25,  0.5,   0.75, 1.0,   2.5,   5.0,   7.5,  10.0,
                                                      20.0,  40.0,  80.0, 160.0, 640.0, 2560.0};
const std::vector<double> kTimePerOutputTokenBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                        0.075,  0.1,   0.15,   0.2,   0.3,  0.4,   0.5,
                                                        0.75,   1.0,   2.5,    5.0,   7.5,  10.0,  20.0};
const std::vector<double> kE2eLatencyBuckets = {0.01, 0.05, 0.1,   0.3,   0.5,   0.8,  1.0,  1.5,
                                                2.0,  2.5,  5.0,   10.0,  15.0,  20.0, 30.0, 40.0,
                                                50.0, 60.0, 120.0, 240.0, 480.0, 960.0};
constexpr runtime::FinishReason kFinishReasons[] = {
    runtime::FinishReason::Stop, runtime::FinishReason::Length, runtime::FinishReason::Abort};

// The shortest text that reads back as the same double ("0.005", "12"), as Prometheus clients write.
std::string number(double value) {
  char text[32];
  const auto result = std::to_chars(text, text + sizeof text, value);
  return std::string(text, result.ptr);
}

// Label values escape backslash, double quote and newline.
std::string escape_label(const std::string& value) {
  std::string escaped;
  for (char c : value) {
    if (c == '\\' || c == '"') escaped += '\\';
    if (c == '\n') {
      escaped += "\\n";
      continue;
    }
    escaped += c;
  }
  return escaped;
}

void header(std::string& out, const std::string& name, const char* type, const char* help) {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

void sample(std::string& out, const std::string& name, const std::string& labels, double value) {
  out += name + "{" + labels + "} " + number(value) + "\n";
}

void single(std::string& out, const char* name, const char* type, const char* help, const std::string& labels,
            double value) {
  header(out, name, type, help);
  sample(out, name, labels, value);
}

}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds)
    : upper_bounds_(std::move(upper_bounds)), counts_(upper_bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  const auto bucket =
      std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), value) - upper_bounds_.begin();
  ++counts_[static_cast<size_t>(bucket)];
  sum_ += value;
  ++count_;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& labels) const {
  int64_t cumulative = 0;
  for (size_t i = 0; i <= upper_bounds_.size(); ++i) {
    cumulative += counts_[i];
    const std::string le = i < upper_bounds_.size() ? number(upper_bounds_[i]) : "+Inf";
    sample(out, name + "_bucket", labels + ",le=\"" + le + "\"", static_cast<double>(cumulative));
  }
  sample(out, name + "_sum", labels, sum_);
  sample(out, name + "_count", labels, static_cast<double>(count_));
}

Metrics::Metrics(const std::string& model_name)
    : labels_("model_name=\"" + escape_label(model_name) + "\""),
      time_to_first_token_(kTimeToFirstTokenBuckets),
      time_per_output_token_(kTimePerOutputTokenBuckets),
      e2e_latency_(kE2eLatencyBuckets) {}

void Metrics::request_admitted(int64_t prompt_tokens) {
  std::lock_guard lock(mutex_);
  prompt_tokens_ += prompt_tokens;
}

void Metrics::first_token(double seconds_since_arrival) {
  std::lock_guard lock(mutex_);
  time_to_first_token_.observe(seconds_since_arrival);
}

void Metrics::request_finished(runtime::FinishReason reason, double e2e_seconds, double tpot_seconds) {
  std::lock_guard lock(mutex_);
  for (size_t i = 0; i < finished_.size(); ++i) finished_[i] += reason == kFinishReasons[i];
  e2e_latency_.observe(e2e_seconds);
  if (tpot_seconds >= 0) time_per_output_token_.observe(tpot_seconds);
}

std::string Metrics::render(const runtime::EngineStats& stats) const {
  std::lock_guard lock(mutex_);
  std::string out;
  const std::string& l = labels_;
  single(out, "swiftkv:num_requests_running", "gauge", "Requests in the running batch.", l,
         static_cast<double>(stats.running));
  single(out, "swiftkv:num_requests_waiting", "gauge", "Requests waiting to be scheduled.", l,
         static_cast<double>(stats.waiting));
  single(out, "swiftkv:kv_cache_usage_perc", "gauge", "Fraction of KV cache blocks in use (1 = full).", l,
         stats.kv_blocks_total > 0
             ? static_cast<double>(stats.kv_blocks_used) / static_cast<double>(stats.kv_blocks_total)
             : 0.0);
  single(out, "swiftkv:prompt_tokens_total", "counter", "Prompt tokens of admitted requests.", l,
         static_cast<double>(prompt_tokens_));
  single(out, "swiftkv:prompt_tokens_computed_total", "counter",
         "Prompt tokens run through the model (prefix-cache hits excluded, recomputation included).", l,
         static_cast<double>(stats.prompt_tokens));
  single(out, "swiftkv:prompt_tokens_skipped_later_layers_total", "counter",
         "Computed prompt tokens that skipped layers [M, L) (SwiftKV's saving).", l,
         static_cast<double>(stats.prompt_tokens_skipped));
  single(out, "swiftkv:generation_tokens_total", "counter", "Generated tokens.", l,
         static_cast<double>(stats.generation_tokens));
  single(out, "swiftkv:prefix_cache_queries_total", "counter", "Prompt tokens looked up in the prefix cache.",
         l, static_cast<double>(stats.prefix_cache_queries));
  single(out, "swiftkv:prefix_cache_hits_total", "counter", "Prompt tokens found in the prefix cache.", l,
         static_cast<double>(stats.prefix_cache_hits));
  single(out, "swiftkv:num_preemptions_total", "counter", "Requests preempted for lack of KV cache blocks.",
         l, static_cast<double>(stats.preemptions));
  header(out, "swiftkv:request_success_total", "counter", "Finished requests by finish reason.");
  for (size_t i = 0; i < finished_.size(); ++i)
    sample(out, "swiftkv:request_success_total",
           l + ",finished_reason=\"" + runtime::finish_reason_name(kFinishReasons[i]) + "\"",
           static_cast<double>(finished_[i]));
  header(out, "swiftkv:time_to_first_token_seconds", "histogram",
         "Time from arrival to the first generated token.");
  time_to_first_token_.render(out, "swiftkv:time_to_first_token_seconds", l);
  header(out, "swiftkv:time_per_output_token_seconds", "histogram",
         "Mean time per generated token after the first, per request.");
  time_per_output_token_.render(out, "swiftkv:time_per_output_token_seconds", l);
  header(out, "swiftkv:e2e_request_latency_seconds", "histogram", "Time from arrival to the last token.");
  e2e_latency_.render(out, "swiftkv:e2e_request_latency_seconds", l);
  return out;
}

}  // namespace swiftkv::server
