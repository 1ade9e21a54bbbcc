#pragma once
// Deterministic normal test inputs for the kernel tests.
#include <cstdint>
#include <random>
#include <vector>

namespace swiftkv::kernels::testing {

inline std::vector<float> random_values(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

}  // namespace swiftkv::kernels::testing
