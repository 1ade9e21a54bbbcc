#pragma once
// Runs the swiftkv program (the build's own binary) as a child process and captures what it prints.
#include <sys/wait.h>

#include <cstdio>
#include <string>

#include "test_paths.h"

namespace swiftkv::testing {

struct CommandResult {
  int status;          // the exit status, -1 when it did not exit normally
  std::string output;  // stdout and stderr together
};

// `arguments` is a shell command line tail: "bench serve --url ...".
inline CommandResult run_swiftkv_command(const std::string& arguments) {
  const std::string command = swiftkv_binary().string() + " " + arguments + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return {-1, "popen failed"};
  std::string output;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

}  // namespace swiftkv::testing
