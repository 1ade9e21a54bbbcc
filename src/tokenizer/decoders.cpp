#include "tokenizer/decoders.h"

#include "common/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/regex.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace swiftkv::tokenizer {
namespace {

constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";  // U+FFFD

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> steps) : steps_(std::move(steps)) {}
  void decode_chain(std::vector<std::string>& pieces) const override {
    for (const auto& step : steps_) step->decode_chain(pieces);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

class ByteLevelDecoder : public Decoder {
 public:
  // All pieces become one byte string, decoded lossily (one U+FFFD per maximal invalid
  // subpart, like Rust's from_utf8_lossy in Hugging Face). A piece with a character outside
  // the byte-level alphabet (an added token such as "<|eot_id|>" is inside it) keeps its
  // own bytes, as in Hugging Face.
  void decode_chain(std::vector<std::string>& pieces) const override {
    std::string bytes;
    for (const std::string& piece : pieces) {
      size_t mark = bytes.size();
      for (size_t pos = 0; pos < piece.size();) {
        int byte = byte_level_char_to_byte(next_codepoint(piece, pos));
        if (byte < 0) {
          bytes.resize(mark);
          bytes += piece;
          break;
        }
        bytes += static_cast<char>(byte);
      }
    }
    pieces.assign(1, sanitize_utf8(bytes));
  }
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(Regex pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void decode_chain(std::vector<std::string>& pieces) const override {
    for (std::string& piece : pieces) piece = pattern_.replace_all(piece, content_);
  }

 private:
  Regex pattern_;
  std::string content_;
};

// Decodes bytes keeping every valid character; each byte of an invalid or unfinished
// sequence becomes one U+FFFD.
void append_bytes_per_byte_lossy(std::string& out, std::string_view bytes) {
  for (size_t pos = 0; pos < bytes.size();) {
    bool complete;
    size_t length = utf8_valid_prefix(bytes.substr(pos), &complete);
    if (length > 0 && complete) {
      out.append(bytes.substr(pos, length));
      pos += length;
    } else {
      size_t invalid = std::max<size_t>(length, 1);
      for (size_t i = 0; i < invalid; ++i) out += kReplacementCharacter;
      pos += invalid;
    }
  }
}

class ByteFallbackDecoder : public Decoder {
 public:
  // A run of <0xXX> pieces becomes the text its bytes spell. Hugging Face turns the WHOLE
  // run into one U+FFFD per byte as soon as any byte in it is invalid; here the valid
  // characters of the run survive (as in SentencePiece) and only the invalid bytes become
  // U+FFFD. Same result whenever a run is valid or entirely invalid, and it lets the
  // streaming decoder emit a character as soon as its last byte arrives.
  void decode_chain(std::vector<std::string>& pieces) const override {
    std::vector<std::string> out;
    std::string run;
    auto flush = [&] {
      if (run.empty()) return;
      std::string text;
      append_bytes_per_byte_lossy(text, run);
      out.push_back(std::move(text));
      run.clear();
    };
    for (std::string& piece : pieces) {
      if (piece.size() == 6 && piece.starts_with("<0x") && piece[5] == '>' &&
          std::isxdigit((unsigned char)piece[3]) && std::isxdigit((unsigned char)piece[4])) {
        run += static_cast<char>(std::stoi(piece.substr(3, 2), nullptr, 16));
        continue;
      }
      flush();
      out.push_back(std::move(piece));
    }
    flush();
    pieces = std::move(out);
  }
};

class FuseDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& pieces) const override {
    std::string joined;
    for (const std::string& piece : pieces) joined += piece;
    pieces.assign(1, std::move(joined));
  }
};

class StripDecoder : public Decoder {
 public:
  StripDecoder(std::string content, size_t start, size_t stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  // Per piece: up to `start` leading and `stop` trailing copies of `content`.
  void decode_chain(std::vector<std::string>& pieces) const override {
    for (std::string& piece : pieces) {
      size_t begin = 0, end = piece.size();
      for (size_t i = 0; i < start_ && piece.compare(begin, content_.size(), content_) == 0 && begin < end;
           ++i)
        begin += content_.size();
      for (size_t i = 0; i < stop_ && end >= begin + content_.size() &&
                         piece.compare(end - content_.size(), content_.size(), content_) == 0;
           ++i)
        end -= content_.size();
      piece = piece.substr(begin, end - begin);
    }
  }

 private:
  std::string content_;
  size_t start_, stop_;
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool strip_first)
      : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  // Hugging Face: "▁" -> " ", except in the first piece where the prepended "▁"s vanish.
  void decode_chain(std::vector<std::string>& pieces) const override {
    for (size_t i = 0; i < pieces.size(); ++i) {
      std::string out;
      const std::string& piece = pieces[i];
      for (size_t pos = 0; pos < piece.size();) {
        if (piece.compare(pos, replacement_.size(), replacement_) == 0) {
          if (!(i == 0 && strip_first_)) out += ' ';
          pos += replacement_.size();
        } else {
          out += piece[pos++];
        }
      }
      pieces[i] = std::move(out);
    }
  }

 private:
  std::string replacement_;
  bool strip_first_;
};

}  // namespace

std::unique_ptr<Decoder> make_decoder(const nlohmann::json& spec) {
  if (spec.is_null()) return nullptr;
  const std::string type = spec.value("type", "");
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Decoder>> steps;
    for (const auto& step : spec.at("decoders"))
      if (auto decoder = make_decoder(step)) steps.push_back(std::move(decoder));
    return std::make_unique<SequenceDecoder>(std::move(steps));
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Replace")
    return std::make_unique<ReplaceDecoder>(make_pattern(spec.at("pattern")),
                                            spec.at("content").get<std::string>());
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip")
    return std::make_unique<StripDecoder>(spec.at("content").get<std::string>(), spec.value("start", 0),
                                          spec.value("stop", 0));
  if (type == "Metaspace") {
    bool strip_first = spec.value("add_prefix_space", true);
    if (spec.contains("prepend_scheme")) strip_first = spec["prepend_scheme"].get<std::string>() != "never";
    return std::make_unique<MetaspaceDecoder>(spec.value("replacement", "\xE2\x96\x81"), strip_first);
  }
  throw Error(
      "tokenizer.json: decoder type \"" + type +
      "\" is not supported (supported: Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace)");
}

std::string run_decoder(const Decoder* decoder, std::vector<std::string> pieces) {
  std::string text;
  if (!decoder) {
    // Hugging Face joins undecoded pieces with spaces.
    for (size_t i = 0; i < pieces.size(); ++i) text += (i ? " " : "") + pieces[i];
    return text;
  }
  decoder->decode_chain(pieces);
  for (const std::string& piece : pieces) text += piece;
  return text;
}

}  // namespace swiftkv::tokenizer
