#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "common/bf16.h"
#include "common/error.h"
#include "common/files.h"
#include "io/mapped_file.h"

namespace swiftkv::io {
namespace {

using nlohmann::json;

// The reference implementation refuses headers above 100 MB; a larger length is corruption.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

bool parse_dtype(const std::string& name, DType* dtype) {
  if (name == "F32")
    *dtype = DType::F32;
  else if (name == "BF16")
    *dtype = DType::BF16;
  else if (name == "F16")
    *dtype = DType::F16;
  else
    return false;
  return true;
}

std::string offsets_string(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
}

// numel * element size, or nullopt-like max on overflow (no real tensor is that large).
uint64_t checked_nbytes(const std::vector<int64_t>& shape, size_t element_size) {
  uint64_t total = element_size;
  for (int64_t dim : shape) {
    if (dim != 0 && total > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(dim))
      return std::numeric_limits<uint64_t>::max();
    total *= static_cast<uint64_t>(dim);
  }
  return total;
}

struct Span {
  uint64_t begin, end;
  std::string name;
};

// Reads and checks one file's header; adds its tensors (pointing into the mapping) to `tensors`.
void parse_file(const MappedFile& file, std::map<std::string, TensorInfo>& tensors,
                std::map<std::string, std::string>& metadata) {
  const std::string where = file.path().string();
  if (file.size() < 8)
    throw Error(where + " is truncated: " + std::to_string(file.size()) +
                " bytes, but a safetensors file starts with an 8-byte header length");
  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = header_bytes << 8 | static_cast<uint8_t>(file.data()[i]);
  if (header_bytes > kMaxHeaderBytes || header_bytes > file.size() - 8)
    throw Error(where + ": header length " + std::to_string(header_bytes) +
                " runs past the end of the file (" + std::to_string(file.size()) +
                " bytes): the file is truncated or not a safetensors file");
  const char* header_text = reinterpret_cast<const char*>(file.data() + 8);
  json header;
  try {
    header = json::parse(header_text, header_text + header_bytes);
  } catch (const json::exception& e) {
    throw Error(where + ": safetensors header is not valid JSON: " + e.what());
  }
  if (!header.is_object()) throw Error(where + ": safetensors header is not a JSON object");

  const std::byte* data_section = file.data() + 8 + header_bytes;
  const uint64_t data_bytes = file.size() - 8 - header_bytes;
  std::vector<Span> spans;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) throw Error(where + ": __metadata__ must be an object of strings");
      for (const auto& [key, value] : entry.items())
        metadata[key] = value.is_string() ? value.get<std::string>() : value.dump();
      continue;
    }
    const std::string tensor = "tensor " + name + " in " + where;
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") ||
        !entry.contains("data_offsets"))
      throw Error(tensor +
                  " has a malformed header entry (needs dtype, shape, data_offsets): " + entry.dump());
    const json& dtype_json = entry["dtype"];
    DType dtype;
    if (!dtype_json.is_string() || !parse_dtype(dtype_json.get<std::string>(), &dtype))
      throw Error(tensor + " has dtype " +
                  (dtype_json.is_string() ? dtype_json.get<std::string>() : dtype_json.dump()) +
                  ", supported: F32, BF16, F16");
    std::vector<int64_t> shape;
    if (!entry["shape"].is_array())
      throw Error(tensor + " has a shape that is not a list: " + entry["shape"].dump());
    for (const json& dim : entry["shape"]) {
      if (!dim.is_number_integer() || dim.get<int64_t>() < 0)
        throw Error(tensor + " has an invalid shape " + entry["shape"].dump());
      shape.push_back(dim.get<int64_t>());
    }
    const json& offsets = entry["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned())
      throw Error(tensor + " has invalid data_offsets " + offsets.dump() + " (expected [begin, end])");
    uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
    if (begin > end)
      throw Error(tensor + " has data_offsets " + offsets_string(begin, end) + " with begin > end");
    if (end > data_bytes)
      throw Error(tensor + " has data_offsets " + offsets_string(begin, end) + " beyond the data section (" +
                  std::to_string(data_bytes) + " bytes): the file is truncated or its header is wrong");
    uint64_t expected = checked_nbytes(shape, dtype_size(dtype));
    if (end - begin != expected)
      throw Error(tensor + " has data_offsets " + offsets_string(begin, end) + " (" +
                  std::to_string(end - begin) + " bytes), but dtype " + dtype_name(dtype) + " and shape " +
                  shape_string(shape) + " need " + std::to_string(expected) + " bytes");
    if (tensors.count(name))
      throw Error("tensor " + name + " appears in both " + tensors.at(name).file.string() + " and " + where);
    TensorInfo info;
    info.name = name;
    info.dtype = dtype;
    info.shape = std::move(shape);
    info.data = data_section + begin;
    info.nbytes = end - begin;
    info.file = file.path();
    tensors.emplace(name, std::move(info));
    spans.push_back({begin, end, name});
  }
  // Sorted by start, a tensor overlaps an earlier one iff it starts before the furthest end so far.
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin; });
  const Span* furthest = nullptr;
  for (const Span& current : spans) {
    if (current.begin == current.end) continue;  // empty tensors occupy no bytes
    if (furthest != nullptr && current.begin < furthest->end)
      throw Error("tensors " + furthest->name + " " + offsets_string(furthest->begin, furthest->end) +
                  " and " + current.name + " " + offsets_string(current.begin, current.end) + " in " + where +
                  " overlap: the header is wrong");
    if (furthest == nullptr || current.end > furthest->end) furthest = &current;
  }
}

}  // namespace

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return "F32";
    case DType::BF16:
      return "BF16";
    case DType::F16:
      return "F16";
  }
  return "?";
}

size_t dtype_size(DType dtype) { return dtype == DType::F32 ? 4 : 2; }

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

int64_t TensorInfo::numel() const {
  int64_t total = 1;
  for (int64_t dim : shape) total *= dim;
  return total;
}

TensorStore::TensorStore() = default;
TensorStore::TensorStore(TensorStore&&) noexcept = default;
TensorStore& TensorStore::operator=(TensorStore&&) noexcept = default;
TensorStore::~TensorStore() = default;

TensorStore TensorStore::open(const std::filesystem::path& model_dir) {
  TensorStore store;
  store.directory_ = model_dir;
  const std::filesystem::path index_path = model_dir / "model.safetensors.index.json";
  const std::filesystem::path single_path = model_dir / "model.safetensors";
  if (std::filesystem::exists(index_path)) {
    json index = read_json_file(index_path);
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
      throw Error(index_path.string() + ": expected an object with a \"weight_map\" object");
    // Shard name -> the tensors the index puts there (for the missing-shard message).
    std::map<std::string, std::vector<std::string>> shards;
    for (const auto& [name, shard] : index["weight_map"].items()) {
      if (!shard.is_string())
        throw Error(index_path.string() + ": weight_map[\"" + name + "\"] is not a file name");
      std::string file = shard.get<std::string>();
      if (file.empty() || file.find('/') != std::string::npos || file == "." || file == "..")
        throw Error(index_path.string() + ": weight_map[\"" + name + "\"] = \"" + file +
                    "\" is not a file name in the model directory");
      shards[file].push_back(name);
    }
    for (const auto& [file, names] : shards) {
      if (!std::filesystem::exists(model_dir / file))
        throw Error("shard " + (model_dir / file).string() + " is missing (listed in " + index_path.string() +
                    " for " + std::to_string(names.size()) + " tensors, e.g. " + names.front() + ")");
      store.files_.push_back(std::make_unique<MappedFile>(model_dir / file));
      parse_file(*store.files_.back(), store.tensors_, store.metadata_);
      for (const std::string& name : names) {
        auto found = store.tensors_.find(name);
        if (found == store.tensors_.end() || found->second.file != model_dir / file)
          throw Error(index_path.string() + " puts tensor " + name + " in " + (model_dir / file).string() +
                      ", but that file does not contain it");
      }
    }
  } else if (std::filesystem::exists(single_path)) {
    store.files_.push_back(std::make_unique<MappedFile>(single_path));
    parse_file(*store.files_.back(), store.tensors_, store.metadata_);
  } else {
    throw Error("no model.safetensors or model.safetensors.index.json in " + model_dir.string());
  }
  return store;
}

bool TensorStore::contains(const std::string& name) const { return tensors_.count(name) != 0; }

const TensorInfo& TensorStore::at(const std::string& name) const {
  auto found = tensors_.find(name);
  if (found != tensors_.end()) return found->second;
  std::string files;
  for (const auto& file : files_) files += (files.empty() ? "" : ", ") + file->path().string();
  throw Error("tensor " + name + " is not in the checkpoint (" + files + ")");
}

std::vector<std::string> TensorStore::names() const {
  std::vector<std::string> result;
  for (const auto& [name, info] : tensors_) result.push_back(name);
  return result;
}

const std::map<std::string, std::string>& TensorStore::metadata() const { return metadata_; }

std::vector<float> TensorStore::read_f32(const std::string& name) const {
  const TensorInfo& info = at(name);
  std::vector<float> values(static_cast<size_t>(info.numel()));
  switch (info.dtype) {
    case DType::F32:
      std::memcpy(values.data(), info.data, info.nbytes);
      break;
    case DType::BF16:
    case DType::F16:
      for (size_t i = 0; i < values.size(); ++i) {
        uint16_t bits;
        std::memcpy(&bits, info.data + 2 * i, 2);  // the data may be unaligned
        values[i] = info.dtype == DType::BF16 ? bf16_to_f32(bits) : f16_to_f32(bits);
      }
      break;
  }
  return values;
}

void TensorStore::release(const std::string& name) const {
  const TensorInfo& info = at(name);
  for (const auto& file : files_) {
    if (file->path() != info.file) continue;
    file->release(static_cast<size_t>(info.data - file->data()), info.nbytes);
  }
}

size_t TensorSpec::nbytes() const {
  size_t total = dtype_size(dtype);
  for (int64_t dim : shape) total *= static_cast<size_t>(dim);
  return total;
}

void write_safetensors_streaming(const std::filesystem::path& path, const std::vector<TensorSpec>& tensors,
                                 const std::function<void(size_t index, const EmitBytes& emit)>& write_tensor,
                                 const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const TensorSpec& tensor : tensors) {
    if (tensor.name.empty() || tensor.name == "__metadata__" || header.contains(tensor.name))
      throw Error("cannot write " + path.string() + ": tensor name \"" + tensor.name +
                  "\" is empty or repeated");
    for (int64_t dim : tensor.shape)
      if (dim < 0)
        throw Error("cannot write " + path.string() + ": tensor " + tensor.name + " has shape " +
                    shape_string(tensor.shape));
    uint64_t end = offset + tensor.nbytes();
    header[tensor.name] = {
        {"dtype", dtype_name(tensor.dtype)}, {"shape", tensor.shape}, {"data_offsets", {offset, end}}};
    offset = end;
  }
  std::string header_text = header.dump();
  // The format allows trailing spaces; padding keeps the data section 8-byte aligned.
  header_text.append((8 - header_text.size() % 8) % 8, ' ');
  write_file_atomically(path, [&](int fd) {
    uint8_t length[8];
    for (int i = 0; i < 8; ++i)
      length[i] = static_cast<uint8_t>(static_cast<uint64_t>(header_text.size()) >> (8 * i));
    write_all(fd, length, sizeof length, path);
    write_all(fd, header_text.data(), header_text.size(), path);
    for (size_t i = 0; i < tensors.size(); ++i) {
      size_t written = 0;
      const size_t expected = tensors[i].nbytes();
      write_tensor(i, [&](const void* data, size_t size) {
        if (written + size > expected)
          throw Error("cannot write " + path.string() + ": more than " + std::to_string(expected) +
                      " bytes given for tensor " + tensors[i].name);
        write_all(fd, data, size, path);
        written += size;
      });
      if (written != expected)
        throw Error("cannot write " + path.string() + ": " + std::to_string(written) +
                    " bytes given for tensor " + tensors[i].name + ", its shape needs " +
                    std::to_string(expected));
    }
  });
}

void write_safetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<TensorSpec> specs;
  for (const TensorToWrite& tensor : tensors) specs.push_back({tensor.name, tensor.dtype, tensor.shape});
  write_safetensors_streaming(
      path, specs, [&](size_t i, const EmitBytes& emit) { emit(tensors[i].data, specs[i].nbytes()); },
      metadata);
}

}  // namespace swiftkv::io
