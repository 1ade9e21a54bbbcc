// log_softmax_at: the value, and an id past the row is an error (not a read past it).
#include "runtime/scoring.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "common/error.h"

namespace swiftkv::runtime {
namespace {

TEST(Scoring, LogSoftmaxAtMatchesTheDefinitionAndRefusesIdsOutsideTheRow) {
  const std::vector<float> logits{1.0f, 2.0f, 3.0f};
  const double denominator = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  EXPECT_NEAR(log_softmax_at(logits, 1), 2.0 - std::log(denominator), 1e-12);
  EXPECT_THROW(log_softmax_at(logits, 3), Error);
  EXPECT_THROW(log_softmax_at(logits, -1), Error);
}

}  // namespace
}  // namespace swiftkv::runtime
