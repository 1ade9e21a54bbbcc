#include "common/byte_size.h"

#include <cctype>
#include <cmath>
#include <cstdlib>

#include "common/error.h"

namespace swiftkv {

namespace {

std::string lowercase(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// Bytes per unit, 0 for an unknown unit.
double unit_bytes(const std::string& unit) {
  const std::string prefixes = "kmgt";
  if (unit.empty() || unit == "b") return 1;
  const size_t power = prefixes.find(unit[0]);
  if (power == std::string::npos) return 0;
  const std::string rest = unit.substr(1);
  if (rest.empty() || rest == "ib") return std::pow(1024.0, double(power + 1));
  if (rest == "b") return std::pow(1000.0, double(power + 1));
  return 0;
}

}  // namespace

int64_t parse_byte_size(const std::string& text, const std::string& option) {
  auto fail = [&]() -> int64_t {
    throw Error(option + " " + text + ": expected a size such as 4GiB, 512MiB, 1.5G or a number of bytes");
  };
  const char* begin = text.c_str();
  char* end = nullptr;
  const double number = std::strtod(begin, &end);
  if (end == begin || !std::isfinite(number) || number < 0) return fail();
  std::string unit = lowercase(end);
  if (!unit.empty() && unit[0] == ' ') unit.erase(0, 1);
  const double bytes = number * unit_bytes(unit);
  if (unit_bytes(unit) == 0 || !(bytes < 0x1p63)) return fail();
  return static_cast<int64_t>(std::llround(bytes));
}

}  // namespace swiftkv
