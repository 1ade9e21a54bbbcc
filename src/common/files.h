#pragma once
// File helpers every layer uses: JSON read with errors that name the file, and atomic
// writes (temporary file in the same directory, fsync, rename) so a crash never leaves a
// half-written file.
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace swiftkv {

// The whole file; throws swiftkv::Error naming the file when it cannot be read.
std::string read_text_file(const std::filesystem::path& path);
// Throws swiftkv::Error naming the file on I/O errors and the position on parse errors.
nlohmann::json read_json_file(const std::filesystem::path& path);

// Calls write(fd) on a fresh temporary file beside `path`, fsyncs it, renames it over
// `path` and fsyncs the directory. On any error the temporary file is removed and
// swiftkv::Error is thrown; `path` is never left half-written.
void write_file_atomically(const std::filesystem::path& path, const std::function<void(int fd)>& write);
// Writes all bytes to fd (retrying short writes), throwing swiftkv::Error naming `path`.
void write_all(int fd, const void* data, size_t size, const std::filesystem::path& path);

void write_json_file(const std::filesystem::path& path, const nlohmann::json& value);

}  // namespace swiftkv
