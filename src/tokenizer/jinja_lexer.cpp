// Jinja lexer with transformers' settings: trim_blocks (drop the newline after a block or
// comment tag), lstrip_blocks (drop spaces/tabs before a block or comment tag that starts a
// line), a single trailing newline removed; `-` markers strip all whitespace on that side,
// `+` markers turn trim/lstrip off for that tag. Comments never reach the parser.
#include <cctype>
#include <cstring>

#include "common/error.h"
#include "tokenizer/jinja.h"
#include "tokenizer/utf8.h"

namespace swiftkv::tokenizer::jinja {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

[[noreturn]] void fail(int line, const std::string& message) {
  throw Error("chat template line " + std::to_string(line) + ": " + message);
}

class Lexer {
 public:
  explicit Lexer(const std::string& source) : src_(source) {
    if (!src_.empty() && src_.back() == '\n') src_.pop_back();
  }

  std::vector<Token> run() {
    while (pos_ < src_.size()) lex_text_and_tag();
    tokens_.push_back({Token::Type::kEnd, "", line_});
    return std::move(tokens_);
  }

 private:
  // Text up to the next tag, with the whitespace rules of the tags on both sides applied.
  void lex_text_and_tag() {
    size_t tag = find_tag(pos_);
    std::string text = src_.substr(pos_, tag - pos_);
    bool starts_line = pos_ == 0 || src_[pos_ - 1] == '\n';
    int text_line = line_;
    count_lines(pos_, tag);
    pos_ = tag;

    // Rules from the previous tag's end.
    if (strip_next_) {
      size_t k = 0;
      while (k < text.size() && is_space(text[k])) ++k;
      text.erase(0, k);
    } else if (trim_next_ && !text.empty() && text[0] == '\n') {
      text.erase(0, 1);
    }
    strip_next_ = trim_next_ = false;

    if (tag < src_.size()) {
      char kind = src_[tag + 1];
      char marker = tag + 2 < src_.size() ? src_[tag + 2] : '\0';
      if (marker == '-') {
        while (!text.empty() && is_space(text.back())) text.pop_back();
      } else if ((kind == '%' || kind == '#') && marker != '+') {
        // lstrip_blocks: only whitespace between the line start and the tag.
        size_t line_start = text.rfind('\n');
        bool at_line_start = line_start != std::string::npos || starts_line;
        size_t from = line_start == std::string::npos ? 0 : line_start + 1;
        if (at_line_start && text.find_first_not_of(" \t", from) == std::string::npos) text.erase(from);
      }
    }
    if (!text.empty()) tokens_.push_back({Token::Type::kText, text, text_line});
    if (tag >= src_.size()) return;

    char kind = src_[tag + 1];
    pos_ = tag + 2;
    if (pos_ < src_.size() && (src_[pos_] == '-' || src_[pos_] == '+')) ++pos_;
    if (kind == '#') {
      lex_comment();
    } else {
      tokens_.push_back({kind == '%' ? Token::Type::kBlockBegin : Token::Type::kVarBegin, "", line_});
      lex_tag(kind == '%');
    }
  }

  size_t find_tag(size_t from) const {
    for (size_t i = from; i + 1 < src_.size(); ++i)
      if (src_[i] == '{' && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    return src_.size();
  }

  void count_lines(size_t from, size_t to) {
    for (size_t i = from; i < to; ++i)
      if (src_[i] == '\n') ++line_;
  }

  void lex_comment() {
    size_t end = src_.find("#}", pos_);
    if (end == std::string::npos) fail(line_, "unterminated comment {# ... #}");
    bool strip = end > pos_ && src_[end - 1] == '-';
    bool keep = end > pos_ && src_[end - 1] == '+';
    count_lines(pos_, end);
    pos_ = end + 2;
    strip_next_ = strip;
    trim_next_ = !strip && !keep;
  }

  // Tokens of one {% %} or {{ }} up to and including its end marker.
  void lex_tag(bool block) {
    int depth = 0;  // open ( [ {: a "}}" inside a dict literal is two braces
    while (true) {
      while (pos_ < src_.size() && is_space(src_[pos_])) {
        if (src_[pos_] == '\n') ++line_;
        ++pos_;
      }
      if (pos_ >= src_.size()) fail(line_, block ? "missing %} at the end of the template" : "missing }}");
      // End markers, optionally with - or +.
      size_t p = pos_;
      char marker = src_[p];
      if (marker == '-' || marker == '+') ++p;
      if (block && src_.compare(p, 2, "%}") == 0) {
        finish_tag(Token::Type::kBlockEnd, p + 2, marker);
        return;
      }
      if (!block && depth == 0 && src_.compare(p, 2, "}}") == 0) {
        finish_tag(Token::Type::kVarEnd, p + 2, marker);
        return;
      }
      lex_token(depth);
    }
  }

  void finish_tag(Token::Type type, size_t end, char marker) {
    tokens_.push_back({type, "", line_});
    pos_ = end;
    strip_next_ = marker == '-';
    trim_next_ = type == Token::Type::kBlockEnd && marker != '+' && marker != '-';
  }

  void lex_token(int& depth) {
    char c = src_[pos_];
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t start = pos_;
      while (pos_ < src_.size() &&
             (std::isalnum(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_'))
        ++pos_;
      tokens_.push_back({Token::Type::kName, src_.substr(start, pos_ - start), line_});
      return;
    }
    if (std::isdigit(static_cast<unsigned char>(c))) {
      lex_number();
      return;
    }
    if (c == '\'' || c == '"') {
      lex_string(c);
      return;
    }
    static const char* const kOperators[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*",
                                             "/",  "%",  "~",  "<",  ">",  "=",  "(", ")", "[",
                                             "]",  "{",  "}",  ",",  ".",  ":",  "|"};
    for (const char* op : kOperators) {
      size_t n = std::strlen(op);
      if (src_.compare(pos_, n, op) == 0) {
        if (n == 1 && (c == '(' || c == '[' || c == '{')) ++depth;
        if (n == 1 && (c == ')' || c == ']' || c == '}')) --depth;
        tokens_.push_back({Token::Type::kOp, op, line_});
        pos_ += n;
        return;
      }
    }
    fail(line_, std::string("unexpected character '") + c + "' in a tag");
  }

  void lex_number() {
    size_t start = pos_;
    auto digits = [&] {
      while (pos_ < src_.size() &&
             (std::isdigit(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_'))
        ++pos_;
    };
    digits();
    bool is_float = false;
    if (pos_ + 1 < src_.size() && src_[pos_] == '.' &&
        std::isdigit(static_cast<unsigned char>(src_[pos_ + 1]))) {
      ++pos_;
      digits();
      is_float = true;
    }
    if (pos_ < src_.size() && (src_[pos_] == 'e' || src_[pos_] == 'E')) {
      size_t save = pos_++;
      if (pos_ < src_.size() && (src_[pos_] == '+' || src_[pos_] == '-')) ++pos_;
      if (pos_ < src_.size() && std::isdigit(static_cast<unsigned char>(src_[pos_]))) {
        digits();
        is_float = true;
      } else {
        pos_ = save;
      }
    }
    std::string spelling;
    for (size_t i = start; i < pos_; ++i)
      if (src_[i] != '_') spelling += src_[i];
    tokens_.push_back({is_float ? Token::Type::kFloat : Token::Type::kInt, spelling, line_});
  }

  // Python string-literal escapes (jinja2 evaluates literals like Python does).
  void lex_string(char quote) {
    int start_line = line_;
    ++pos_;
    std::string value;
    while (true) {
      if (pos_ >= src_.size()) fail(start_line, "unterminated string literal");
      char c = src_[pos_++];
      if (c == quote) break;
      if (c == '\n') ++line_;
      if (c != '\\') {
        value += c;
        continue;
      }
      if (pos_ >= src_.size()) fail(start_line, "unterminated string literal");
      char e = src_[pos_++];
      switch (e) {
        case 'n':
          value += '\n';
          break;
        case 't':
          value += '\t';
          break;
        case 'r':
          value += '\r';
          break;
        case 'b':
          value += '\b';
          break;
        case 'f':
          value += '\f';
          break;
        case 'v':
          value += '\v';
          break;
        case '0':
          value += '\0';
          break;
        case '\\':
          value += '\\';
          break;
        case '\'':
          value += '\'';
          break;
        case '"':
          value += '"';
          break;
        case '\n':
          ++line_;
          break;  // line continuation
        case 'x':
        case 'u':
        case 'U': {
          size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          if (pos_ + n > src_.size()) fail(line_, std::string("bad \\") + e + " escape in a string literal");
          uint32_t cp = 0;
          for (size_t i = 0; i < n; ++i) {
            char h = src_[pos_ + i];
            if (!std::isxdigit(static_cast<unsigned char>(h)))
              fail(line_, std::string("bad \\") + e + " escape in a string literal");
            cp = cp * 16 +
                 (std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (std::tolower(h) - 'a' + 10));
          }
          pos_ += n;
          append_utf8(value, cp);
          break;
        }
        default:  // Python keeps unknown escapes verbatim
          value += '\\';
          value += e;
      }
    }
    tokens_.push_back({Token::Type::kString, value, start_line});
  }

  std::string src_;
  size_t pos_ = 0;
  int line_ = 1;
  bool strip_next_ = false, trim_next_ = false;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> tokenize(const std::string& source) { return Lexer(source).run(); }

}  // namespace swiftkv::tokenizer::jinja
