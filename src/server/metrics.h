#pragma once
// Prometheus metrics for GET /metrics, named like vLLM's with a `swiftkv:` prefix and labelled
// with model_name. Request latencies are recorded here by the HTTP threads; token counts,
// queue lengths and KV cache use come from the engine's stats when rendered.
#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/engine.h"

namespace swiftkv::server {

// Cumulative buckets (le = upper bound) plus sum and count.
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double value);
  // Appends `name`_bucket{...,le="..."}, `name`_sum and `name`_count lines.
  void render(std::string& out, const std::string& name, const std::string& labels) const;

 private:
  std::vector<double> upper_bounds_;
  std::vector<int64_t> counts_;  // per bucket, not cumulative; one more for +Inf
  double sum_ = 0;
  int64_t count_ = 0;
};

class Metrics {
 public:
  explicit Metrics(const std::string& model_name);

  void request_admitted(int64_t prompt_tokens);
  void first_token(double seconds_since_arrival);
  // tpot_seconds: mean time per output token after the first, < 0 when there was only one.
  void request_finished(runtime::FinishReason reason, double e2e_seconds, double tpot_seconds);

  // The Prometheus text exposition (version 0.0.4).
  std::string render(const runtime::EngineStats& stats) const;

 private:
  std::string labels_;  // model_name="..."
  mutable std::mutex mutex_;
  int64_t prompt_tokens_ = 0;
  std::array<int64_t, 3> finished_{};  // by reason: stop, length, abort
  Histogram time_to_first_token_, time_per_output_token_, e2e_latency_;
};

}  // namespace swiftkv::server
