#include "common/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "common/error.h"

namespace swiftkv {

std::string read_text_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open " + path.string() + ": " + std::strerror(errno));
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw Error("cannot read " + path.string() + ": " + std::strerror(errno));
  return buffer.str();
}

nlohmann::json read_json_file(const std::filesystem::path& path) {
  const std::string text = read_text_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(path.string() + " is not valid JSON: " + e.what());
  }
}

void write_all(int fd, const void* data, size_t size, const std::filesystem::path& path) {
  const char* bytes = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t written = ::write(fd, bytes, size);
    if (written < 0) {
      if (errno == EINTR) continue;
      throw Error("cannot write " + path.string() + ": " + std::strerror(errno));
    }
    bytes += written;
    size -= static_cast<size_t>(written);
  }
}

void write_file_atomically(const std::filesystem::path& path, const std::function<void(int fd)>& write) {
  std::filesystem::path dir = path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();
  std::random_device random;
  std::filesystem::path temporary =
      dir / ("." + path.filename().string() + ".tmp-" + std::to_string(random() % 1000000));
  int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) throw Error("cannot create " + temporary.string() + ": " + std::strerror(errno));
  try {
    write(fd);
    if (::fsync(fd) != 0) throw Error("cannot fsync " + temporary.string() + ": " + std::strerror(errno));
    if (::close(fd) != 0) {
      fd = -1;
      throw Error("cannot close " + temporary.string() + ": " + std::strerror(errno));
    }
    fd = -1;
    if (::rename(temporary.c_str(), path.c_str()) != 0)
      throw Error("cannot rename " + temporary.string() + " to " + path.string() + ": " + std::strerror(errno));
  } catch (...) {
    if (fd >= 0) ::close(fd);
    std::error_code ignored;
    std::filesystem::remove(temporary, ignored);
    throw;
  }
  int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

void write_json_file(const std::filesystem::path& path, const nlohmann::json& value) {
  std::string text = value.dump(2) + "\n";
  write_file_atomically(path, [&](int fd) { write_all(fd, text.data(), text.size(), path); });
}

}  // namespace swiftkv
