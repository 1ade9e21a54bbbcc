#include "io/model_dir.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

#include "common/error.h"

namespace swiftkv::io {

void write_model_directory(const std::filesystem::path& out_dir,
                           const std::function<void(const std::filesystem::path& staging)>& write) {
  namespace fs = std::filesystem;
  fs::path target = out_dir;
  if (target.filename().empty()) target = target.parent_path();  // "out/" names "out"
  if (target.empty()) throw Error("no output directory given");
  std::error_code error;
  if (fs::exists(target) && (!fs::is_directory(target) || !fs::is_empty(target)))
    throw Error(target.string() +
                " already exists and is not an empty directory; remove it or choose another output");
  fs::path parent = fs::absolute(target).parent_path();
  fs::create_directories(parent, error);
  if (error) throw Error("cannot create " + parent.string() + ": " + error.message());

  std::random_device random;
  std::string staging_name = ".";  // appended step by step: GCC 12 warns falsely on "." + string
  staging_name.append(target.filename().string()).append(".tmp-").append(std::to_string(random() % 1000000));
  fs::path staging = parent / staging_name;
  if (!fs::create_directory(staging, error) || error)
    throw Error("cannot create " + staging.string() + ": " + (error ? error.message() : "it already exists"));
  try {
    write(staging);
    // rename(2) replaces an empty directory atomically; a missing target is simply created.
    if (::rename(staging.c_str(), target.c_str()) != 0)
      throw Error("cannot rename " + staging.string() + " to " + target.string() + ": " +
                  std::strerror(errno));
  } catch (...) {
    fs::remove_all(staging, error);
    throw;
  }
  int dir_fd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

}  // namespace swiftkv::io
