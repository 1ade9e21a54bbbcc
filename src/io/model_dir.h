#pragma once
// Writing a whole model directory so that a crash never leaves half a model behind.
#include <filesystem>
#include <functional>

namespace swiftkv::io {

// Calls write(staging) on a fresh temporary sibling of out_dir (".NAME.tmp-XXXXXX"), then
// renames it to out_dir. out_dir may not exist yet or be empty; a non-empty out_dir is refused
// before anything is written (nothing is overwritten). On any error the staging directory is
// removed and the error rethrown.
void write_model_directory(const std::filesystem::path& out_dir,
                           const std::function<void(const std::filesystem::path& staging)>& write);

}  // namespace swiftkv::io
