#pragma once
// Reading one sample out of a Prometheus text exposition (GET /metrics).
#include <cmath>
#include <sstream>
#include <string>

namespace swiftkv::testing {

// The value of the sample line `series` (name{labels}) in `text`; NaN when there is none.
inline double prometheus_sample(const std::string& text, const std::string& series) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line))
    if (line.starts_with(series + " ")) return std::stod(line.substr(series.size() + 1));
  return std::nan("");
}

}  // namespace swiftkv::testing
