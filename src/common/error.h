#pragma once
// One exception type for every error a user can act on (bad checkpoint, bad input,
// unsupported config). The message names the file / tensor / value and what was expected.
#include <stdexcept>
#include <string>

namespace swiftkv {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace swiftkv
