// Metrics of `swiftkv bench serve`, computed and reported as vLLM's benchmark_serving.py does.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "server/load_generator.h"

namespace swiftkv::server {

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = p / 100 * static_cast<double>(values.size() - 1);
  const size_t below = static_cast<size_t>(std::floor(rank)), above = static_cast<size_t>(std::ceil(rank));
  return values[below] + (values[above] - values[below]) * (rank - static_cast<double>(below));
}

Summary summarize(const std::vector<double>& values) {
  if (values.empty()) return {};
  const double sum = std::accumulate(values.begin(), values.end(), 0.0);
  return {sum / static_cast<double>(values.size()), percentile(values, 50), percentile(values, 99)};
}

BenchmarkMetrics calculate_metrics(const std::vector<RequestResult>& results, double duration_s) {
  BenchmarkMetrics metrics;
  metrics.duration_s = duration_s;
  std::vector<double> ttfts, tpots, itls, e2els;
  for (const RequestResult& result : results) {
    if (!result.success) {
      ++metrics.failed;
      continue;
    }
    ++metrics.completed;
    metrics.total_input_tokens += result.prompt_tokens;
    metrics.total_output_tokens += result.output_tokens;
    ttfts.push_back(result.ttft_s * 1000);
    e2els.push_back(result.latency_s * 1000);
    if (result.output_tokens > 1)
      tpots.push_back((result.latency_s - result.ttft_s) * 1000 /
                      static_cast<double>(result.output_tokens - 1));
    for (double itl : result.itls_s) itls.push_back(itl * 1000);
  }
  if (duration_s > 0) {
    metrics.request_throughput = static_cast<double>(metrics.completed) / duration_s;
    metrics.output_throughput = static_cast<double>(metrics.total_output_tokens) / duration_s;
    metrics.total_token_throughput =
        static_cast<double>(metrics.total_input_tokens + metrics.total_output_tokens) / duration_s;
  }
  metrics.ttft_ms = summarize(ttfts);
  metrics.tpot_ms = summarize(tpots);
  metrics.itl_ms = summarize(itls);
  metrics.e2el_ms = summarize(e2els);
  return metrics;
}

std::string format_report(const BenchmarkMetrics& metrics) {
  std::string report;
  char line[128];
  auto heading = [&](const std::string& title, char fill) {
    const size_t width = 50, left = (width - title.size()) / 2;
    report += std::string(left, fill) + title + std::string(width - left - title.size(), fill) + "\n";
  };
  auto count = [&](const char* name, int64_t value) {
    std::snprintf(line, sizeof line, "%-40s %-10lld\n", name, static_cast<long long>(value));
    report += line;
  };
  auto number = [&](const std::string& name, double value) {
    std::snprintf(line, sizeof line, "%-40s %-10.2f\n", name.c_str(), value);
    report += line;
  };
  auto summary = [&](const std::string& title, const std::string& name, const Summary& values) {
    heading(title, '-');
    number("Mean " + name + " (ms):", values.mean);
    number("Median " + name + " (ms):", values.median);
    number("P99 " + name + " (ms):", values.p99);
  };
  heading(" Serving Benchmark Result ", '=');
  count("Successful requests:", metrics.completed);
  count("Failed requests:", metrics.failed);
  number("Benchmark duration (s):", metrics.duration_s);
  count("Total input tokens:", metrics.total_input_tokens);
  count("Total generated tokens:", metrics.total_output_tokens);
  number("Request throughput (req/s):", metrics.request_throughput);
  number("Output token throughput (tok/s):", metrics.output_throughput);
  number("Total Token throughput (tok/s):", metrics.total_token_throughput);
  summary("Time to First Token", "TTFT", metrics.ttft_ms);
  summary("Time per Output Token (excl. 1st token)", "TPOT", metrics.tpot_ms);
  summary("Inter-token Latency", "ITL", metrics.itl_ms);
  summary("End-to-end Latency", "E2EL", metrics.e2el_ms);
  heading("", '=');
  return report;
}

nlohmann::json metrics_json(const BenchmarkMetrics& metrics, const std::vector<RequestResult>& results) {
  nlohmann::json json = {{"duration", metrics.duration_s},
                         {"completed", metrics.completed},
                         {"failed", metrics.failed},
                         {"total_input_tokens", metrics.total_input_tokens},
                         {"total_output_tokens", metrics.total_output_tokens},
                         {"request_throughput", metrics.request_throughput},
                         {"output_throughput", metrics.output_throughput},
                         {"total_token_throughput", metrics.total_token_throughput}};
  const std::pair<const char*, const Summary*> summaries[] = {{"ttft", &metrics.ttft_ms},
                                                              {"tpot", &metrics.tpot_ms},
                                                              {"itl", &metrics.itl_ms},
                                                              {"e2el", &metrics.e2el_ms}};
  for (const auto& [name, summary] : summaries) {
    json[std::string("mean_") + name + "_ms"] = summary->mean;
    json[std::string("median_") + name + "_ms"] = summary->median;
    json[std::string("p99_") + name + "_ms"] = summary->p99;
  }
  nlohmann::json input_lens = nlohmann::json::array(), output_lens = nlohmann::json::array(),
                 ttfts = nlohmann::json::array(), itls = nlohmann::json::array(),
                 start_times = nlohmann::json::array(), errors = nlohmann::json::array();
  for (const RequestResult& result : results) {
    input_lens.push_back(result.prompt_tokens);
    output_lens.push_back(result.output_tokens);
    ttfts.push_back(result.success ? result.ttft_s : 0.0);
    itls.push_back(result.itls_s);
    start_times.push_back(result.start_s);
    errors.push_back(result.error);
  }
  json["input_lens"] = input_lens;
  json["output_lens"] = output_lens;
  json["ttfts"] = ttfts;
  json["itls"] = itls;
  json["start_times"] = start_times;
  json["errors"] = errors;
  return json;
}

}  // namespace swiftkv::server
