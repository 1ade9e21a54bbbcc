#pragma once
// Sizes given on the command line: "4GiB", "512MiB", "1.5G", "2000000000", "8GB".
#include <cstdint>
#include <string>

namespace swiftkv {

// KiB/MiB/GiB/TiB and K/M/G/T are powers of 1024, KB/MB/GB/TB powers of 1000, B or nothing is
// bytes; units are case-insensitive and may follow a space. Throws swiftkv::Error naming `option`
// for anything else, negative sizes and sizes over 2^63 bytes.
int64_t parse_byte_size(const std::string& text, const std::string& option);

}  // namespace swiftkv
