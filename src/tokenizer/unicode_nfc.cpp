#include "tokenizer/unicode_nfc.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "tokenizer/utf8.h"

namespace swiftkv::tokenizer {
namespace {

struct CombiningClass {
  uint32_t codepoint;
  uint8_t combining_class;
};
struct Decomposition {
  uint32_t codepoint, first, second;
};
struct Composition {
  uint32_t first, second, composite;
};
#include "tokenizer/unicode_nfc_data.inc"

// Hangul syllables compose and decompose algorithmically (Unicode 3.12).
constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
                   kSCount = kLCount * kNCount;

uint8_t combining_class(uint32_t codepoint) {
  if (codepoint < 0x300) return 0;
  auto it = std::lower_bound(std::begin(kCombiningClasses), std::end(kCombiningClasses), codepoint,
                             [](const CombiningClass& entry, uint32_t cp) { return entry.codepoint < cp; });
  return it != std::end(kCombiningClasses) && it->codepoint == codepoint ? it->combining_class : 0;
}

void decompose(uint32_t codepoint, std::vector<uint32_t>& out) {
  if (codepoint >= kSBase && codepoint < kSBase + kSCount) {
    uint32_t index = codepoint - kSBase;
    out.push_back(kLBase + index / kNCount);
    out.push_back(kVBase + (index % kNCount) / kTCount);
    if (index % kTCount != 0) out.push_back(kTBase + index % kTCount);
    return;
  }
  auto it = std::lower_bound(std::begin(kDecompositions), std::end(kDecompositions), codepoint,
                             [](const Decomposition& entry, uint32_t cp) { return entry.codepoint < cp; });
  if (it == std::end(kDecompositions) || it->codepoint != codepoint) {
    out.push_back(codepoint);
    return;
  }
  decompose(it->first, out);  // the first part may decompose further; the second never does
  if (it->second != 0) decompose(it->second, out);
}

// The primary composite of (first, second), or 0.
uint32_t compose(uint32_t first, uint32_t second) {
  if (first >= kLBase && first < kLBase + kLCount && second >= kVBase && second < kVBase + kVCount)
    return kSBase + ((first - kLBase) * kVCount + (second - kVBase)) * kTCount;
  if (first >= kSBase && first < kSBase + kSCount && (first - kSBase) % kTCount == 0 && second > kTBase &&
      second < kTBase + kTCount)
    return first + (second - kTBase);
  auto it = std::lower_bound(std::begin(kCompositions), std::end(kCompositions), std::pair(first, second),
                             [](const Composition& entry, std::pair<uint32_t, uint32_t> key) {
                               return std::pair(entry.first, entry.second) < key;
                             });
  return it != std::end(kCompositions) && it->first == first && it->second == second ? it->composite : 0;
}

}  // namespace

std::string to_nfc(std::string_view text) {
  // Everything below U+0300 is already NFC and never composes with what precedes it, so
  // plain ASCII / Latin-1 text (the common case) is returned as is.
  bool trivial =
      std::all_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0xCC; });
  if (trivial) return std::string(text);

  std::vector<uint32_t> codepoints;
  codepoints.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) decompose(next_codepoint(text, pos), codepoints);

  // Canonical ordering: stable-sort every run of non-starters by combining class.
  for (size_t start = 0; start < codepoints.size();) {
    if (combining_class(codepoints[start]) == 0) {
      ++start;
      continue;
    }
    size_t end = start;
    while (end < codepoints.size() && combining_class(codepoints[end]) != 0) ++end;
    std::stable_sort(codepoints.begin() + start, codepoints.begin() + end,
                     [](uint32_t a, uint32_t b) { return combining_class(a) < combining_class(b); });
    start = end;
  }

  // Canonical composition: each character composes with the last starter unless a character
  // of the same or higher class (or a starter) stands between them ("blocked").
  std::vector<uint32_t> composed;
  composed.reserve(codepoints.size());
  size_t starter = SIZE_MAX;  // index in `composed` of the last starter
  int last_class = -1;        // class of the last character appended after that starter
  for (uint32_t codepoint : codepoints) {
    uint8_t klass = combining_class(codepoint);
    if (starter != SIZE_MAX && (last_class < klass || (last_class == 0 && starter == composed.size() - 1))) {
      if (uint32_t composite = compose(composed[starter], codepoint)) {
        composed[starter] = composite;
        continue;
      }
    }
    if (klass == 0) {
      starter = composed.size();
      last_class = 0;
    } else {
      last_class = klass;
    }
    composed.push_back(codepoint);
  }

  std::string out;
  out.reserve(text.size());
  for (uint32_t codepoint : composed) append_utf8(out, codepoint);
  return out;
}

}  // namespace swiftkv::tokenizer
