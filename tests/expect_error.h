#pragma once
// Runs `action`, expects swiftkv::Error, and checks that the message holds every fragment.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/error.h"

namespace swiftkv::testing {

template <typename Action>
std::string expect_error(Action&& action, const std::vector<std::string>& fragments) {
  try {
    action();
  } catch (const Error& error) {
    std::string message = error.what();
    for (const std::string& fragment : fragments)
      EXPECT_NE(message.find(fragment), std::string::npos)
          << "missing \"" << fragment << "\" in: " << message;
    return message;
  }
  ADD_FAILURE() << "expected swiftkv::Error";
  return {};
}

}  // namespace swiftkv::testing
