#pragma once
// `swiftkv serve` as a child process for end-to-end tests: started on a free loopback port
// (--port 0; the port is read from its first stdout line), stopped with a signal.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "io/llama2c.h"
#include "test_paths.h"

namespace swiftkv::testing {

// stories260K imported from ../shared into a directory of this process (ctest runs test
// processes concurrently).
inline std::filesystem::path import_stories260k(const std::string& name) {
  const auto dir = fresh_temp_dir(name + "_" + std::to_string(::getpid()));
  std::filesystem::remove(dir);
  io::import_llama2c(shared_dir() / "data/stories260K/stories260K.bin",
                     shared_dir() / "data/stories260K/tok512.bin", dir);
  return dir;
}

class ServeProcess {
 public:
  // Starts `swiftkv serve --port 0 ARGS...` and waits (up to a minute) for the line naming its port.
  explicit ServeProcess(const std::vector<std::string>& args) {
    int out[2];
    if (::pipe(out) != 0) throw std::runtime_error("pipe failed");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], STDOUT_FILENO);
      ::close(out[0]);
      ::close(out[1]);
      std::vector<std::string> argv_strings = {swiftkv_binary().string(), "serve", "--port", "0"};
      argv_strings.insert(argv_strings.end(), args.begin(), args.end());
      std::vector<char*> argv;
      for (std::string& arg : argv_strings) argv.push_back(arg.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      std::perror("execv swiftkv");
      ::_exit(127);
    }
    ::close(out[1]);
    stdout_ = ::fdopen(out[0], "r");
    char line[1024];
    while (std::fgets(line, sizeof line, stdout_)) {
      banner_ += line;
      const std::string text = line;
      const size_t at = text.find("http://");
      if (at == std::string::npos) continue;
      const size_t colon = text.find(':', at + 7);
      port_ = std::stoi(text.substr(colon + 1));
      return;
    }
    throw std::runtime_error("swiftkv serve exited before listening (exit status " + std::to_string(wait()) +
                             ")");
  }
  ServeProcess(const ServeProcess&) = delete;
  ServeProcess& operator=(const ServeProcess&) = delete;
  ~ServeProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      wait();
    }
    if (stdout_) std::fclose(stdout_);
  }

  int port() const { return port_; }
  const std::string& banner() const { return banner_; }  // what it printed on stdout before listening

  // Sends `signal` and waits; returns the exit status (128 + signal when killed by one, -1 on a
  // timeout, after which it is killed).
  int stop(int signal, std::chrono::seconds timeout = std::chrono::seconds(30)) {
    ::kill(pid_, signal);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;  // the destructor kills it
  }

 private:
  int wait() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  pid_t pid_ = -1;
  FILE* stdout_ = nullptr;
  int port_ = 0;
  std::string banner_;
};

}  // namespace swiftkv::testing
