#pragma once
// A read-only, private memory mapping of a whole file (internal to io/: safetensors shards and
// llama2.c checkpoints are read through it, so loading is instant and pages are shared with
// the page cache).
#include <cstddef>
#include <filesystem>

namespace swiftkv::io {

class MappedFile {
 public:
  // Throws swiftkv::Error naming the file when it cannot be opened or mapped. An empty file
  // maps to size() == 0 and data() == nullptr.
  explicit MappedFile(const std::filesystem::path& path);
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

  // Drops the pages covering [offset, offset + size) from this process (MADV_DONTNEED). The
  // mapping is read-only and file-backed, so a later access simply faults the data in again.
  void release(size_t offset, size_t size) const;

 private:
  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace swiftkv::io
