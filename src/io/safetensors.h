#pragma once
// safetensors: memory-mapped reading (single file or sharded with
// model.safetensors.index.json) and atomic writing.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace swiftkv::io {

enum class DType { F32, BF16, F16 };
const char* dtype_name(DType dtype);  // "F32", "BF16", "F16" as in the safetensors header
size_t dtype_size(DType dtype);

std::string shape_string(const std::vector<int64_t>& shape);  // "[172, 64]"

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  // Inside the read-only mapping, valid while the store lives. Not necessarily aligned to the
  // element size (the format only aligns the data section to 8 bytes): copy or memcpy.
  const std::byte* data = nullptr;
  size_t nbytes = 0;
  std::filesystem::path file;  // for error messages
  int64_t numel() const;
};

class MappedFile;

// All tensors of a model directory. Every header is checked on open (JSON, dtypes, offsets
// inside the file and consistent with shape x dtype, no overlaps); errors name the file and
// the tensor.
class TensorStore {
 public:
  static TensorStore open(const std::filesystem::path& model_dir);
  TensorStore(TensorStore&&) noexcept;
  TensorStore& operator=(TensorStore&&) noexcept;
  ~TensorStore();

  bool contains(const std::string& name) const;
  const TensorInfo& at(const std::string& name) const;  // throws naming the tensor and the files
  std::vector<std::string> names() const;               // sorted
  const std::map<std::string, std::string>& metadata() const;
  // The model directory the store was opened from (for messages).
  const std::filesystem::path& directory() const { return directory_; }

  // Copies a tensor converted to float32 (any stored dtype).
  std::vector<float> read_f32(const std::string& name) const;
  // Drops the tensor's pages from this process's memory (madvise DONTNEED) once it has been
  // packed into another layout, so serving never holds the file and a packed copy both.
  void release(const std::string& name) const;

 private:
  TensorStore();
  std::filesystem::path directory_;
  std::vector<std::unique_ptr<MappedFile>> files_;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;  // numel * dtype_size bytes
};

// Writes one .safetensors file with `metadata` in "__metadata__" (e.g. {"format": "pt"}),
// atomically: PATH.tmp-XXXX in the same directory, fsync, rename over PATH.
void write_safetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// The streaming form (write_safetensors is built on it), for files larger than memory: the
// header is written from `tensors` first, then write_tensor(i, emit) is called once per tensor,
// in order, and must pass exactly that tensor's numel * dtype_size bytes to emit, in as many
// pieces as it likes (anything else throws). Atomic like write_safetensors.
struct TensorSpec {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  size_t nbytes() const;
};
using EmitBytes = std::function<void(const void* data, size_t size)>;
void write_safetensors_streaming(const std::filesystem::path& path, const std::vector<TensorSpec>& tensors,
                                 const std::function<void(size_t index, const EmitBytes& emit)>& write_tensor,
                                 const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

}  // namespace swiftkv::io
