// The Prometheus exposition: vLLM's names with the swiftkv: prefix, cumulative histogram
// buckets, engine stats, escaped labels.
#include "server/metrics.h"

#include <gtest/gtest.h>

#include "server/prometheus_sample.h"

namespace swiftkv::server {
namespace {

using swiftkv::testing::prometheus_sample;

TEST(Metrics, CountersGaugesAndHistogramsFromRequestsAndEngineStats) {
  Metrics metrics("stories");
  metrics.request_admitted(7);
  metrics.request_admitted(5);
  metrics.first_token(0.003);
  metrics.first_token(0.3);
  metrics.request_finished(runtime::FinishReason::Length, 0.5, 0.002);
  metrics.request_finished(runtime::FinishReason::Abort, 30, -1);  // no second token: no TPOT
  runtime::EngineStats stats;
  stats.running = 2;
  stats.waiting = 1;
  stats.kv_blocks_total = 8;
  stats.kv_blocks_used = 2;
  stats.prompt_tokens = 10;
  stats.prompt_tokens_skipped = 6;
  stats.generation_tokens = 4;
  stats.prefix_cache_queries = 12;
  stats.prefix_cache_hits = 2;
  const std::string text = metrics.render(stats);
  const std::string l = "{model_name=\"stories\"";
  EXPECT_EQ(prometheus_sample(text, "swiftkv:num_requests_running" + l + "}"), 2);
  EXPECT_EQ(prometheus_sample(text, "swiftkv:num_requests_waiting" + l + "}"), 1);
  EXPECT_EQ(prometheus_sample(text, "swiftkv:kv_cache_usage_perc" + l + "}"), 0.25);
  EXPECT_EQ(prometheus_sample(text, "swiftkv:prompt_tokens_total" + l + "}"), 12);
  EXPECT_EQ(prometheus_sample(text, "swiftkv:prompt_tokens_computed_total" + l + "}"), 10);
  EXPECT_EQ(prometheus_sample(text, "swiftkv:prompt_tokens_skipped_later_layers_total" + l + "}"), 6);
  EXPECT_EQ(prometheus_sample(text, "swiftkv:generation_tokens_total" + l + "}"), 4);
  EXPECT_EQ(prometheus_sample(text, "swiftkv:prefix_cache_queries_total" + l + "}"), 12);
  EXPECT_EQ(prometheus_sample(text, "swiftkv:prefix_cache_hits_total" + l + "}"), 2);
  EXPECT_EQ(prometheus_sample(text, "swiftkv:request_success_total" + l + ",finished_reason=\"length\"}"), 1);
  EXPECT_EQ(prometheus_sample(text, "swiftkv:request_success_total" + l + ",finished_reason=\"abort\"}"), 1);
  EXPECT_EQ(prometheus_sample(text, "swiftkv:request_success_total" + l + ",finished_reason=\"stop\"}"), 0);
  // Cumulative buckets: 0.003 s falls in le=0.005, 0.3 s in le=0.5.
  const std::string ttft = "swiftkv:time_to_first_token_seconds";
  EXPECT_EQ(prometheus_sample(text, ttft + "_bucket" + l + ",le=\"0.001\"}"), 0);
  EXPECT_EQ(prometheus_sample(text, ttft + "_bucket" + l + ",le=\"0.005\"}"), 1);
  EXPECT_EQ(prometheus_sample(text, ttft + "_bucket" + l + ",le=\"0.5\"}"), 2);
  EXPECT_EQ(prometheus_sample(text, ttft + "_bucket" + l + ",le=\"+Inf\"}"), 2);
  EXPECT_EQ(prometheus_sample(text, ttft + "_count" + l + "}"), 2);
  EXPECT_DOUBLE_EQ(prometheus_sample(text, ttft + "_sum" + l + "}"), 0.303);
  EXPECT_EQ(prometheus_sample(text, "swiftkv:time_per_output_token_seconds_count" + l + "}"), 1);
  EXPECT_EQ(prometheus_sample(text, "swiftkv:e2e_request_latency_seconds_count" + l + "}"), 2);
  EXPECT_EQ(prometheus_sample(text, "swiftkv:e2e_request_latency_seconds_bucket" + l + ",le=\"20\"}"), 1);
  EXPECT_NE(text.find("# TYPE swiftkv:time_to_first_token_seconds histogram\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE swiftkv:generation_tokens_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE swiftkv:num_requests_running gauge\n"), std::string::npos);
}

TEST(Metrics, LabelValuesAreEscaped) {
  Metrics metrics("a\"b\\c\nd");
  const std::string text = metrics.render({});
  EXPECT_NE(text.find("model_name=\"a\\\"b\\\\c\\nd\""), std::string::npos) << text;
  EXPECT_EQ(prometheus_sample(text, "swiftkv:kv_cache_usage_perc{model_name=\"a\\\"b\\\\c\\nd\"}"),
            0);  // no pool: 0, not NaN
}

}  // namespace
}  // namespace swiftkv::server
