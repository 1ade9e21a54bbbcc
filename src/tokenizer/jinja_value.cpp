// Python semantics of template values: truthiness, str()/repr(), json.dumps, ==, <, len,
// iteration, attribute/item lookup (jinja2's getattr-then-item rules) and slicing.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <optional>

#include "tokenizer/jinja.h"
#include "tokenizer/utf8.h"

namespace swiftkv::tokenizer::jinja {

// ---- Object / Value ------------------------------------------------------------------------

const Value* Object::find(const std::string& key) const {
  for (const auto& [k, v] : entries)
    if (k == key) return &v;
  return nullptr;
}

void Object::set(const std::string& key, Value value) {
  for (auto& [k, v] : entries)
    if (k == key) {
      v = std::move(value);
      return;
    }
  entries.emplace_back(key, std::move(value));
}

Value Value::undefined(std::string name) {
  Value v;
  v.string = std::move(name);
  return v;
}
Value Value::none() {
  Value v;
  v.kind = Kind::kNone;
  return v;
}
Value Value::from_bool(bool b) {
  Value v;
  v.kind = Kind::kBool;
  v.boolean = b;
  return v;
}
Value Value::from_int(int64_t i) {
  Value v;
  v.kind = Kind::kInt;
  v.integer = i;
  return v;
}
Value Value::from_float(double d) {
  Value v;
  v.kind = Kind::kFloat;
  v.number = d;
  return v;
}
Value Value::from_string(std::string s) {
  Value v;
  v.kind = Kind::kString;
  v.string = std::move(s);
  return v;
}
Value Value::from_array(Array a, bool tuple) {
  Value v;
  v.kind = Kind::kArray;
  v.is_tuple = tuple;
  v.array = std::make_shared<Array>(std::move(a));
  return v;
}
Value Value::from_object(Object o) {
  Value v;
  v.kind = Kind::kObject;
  v.object = std::make_shared<Object>(std::move(o));
  return v;
}
Value Value::namespace_of(Object o) {
  Value v = from_object(std::move(o));
  v.kind = Kind::kNamespace;
  return v;
}
Value Value::from_function(Function f) {
  Value v;
  v.kind = Kind::kFunction;
  v.function = std::make_shared<Function>(std::move(f));
  return v;
}

bool Value::truthy() const {
  switch (kind) {
    case Kind::kUndefined:
    case Kind::kNone:
      return false;
    case Kind::kBool:
      return boolean;
    case Kind::kInt:
      return integer != 0;
    case Kind::kFloat:
      return number != 0;
    case Kind::kString:
      return !string.empty();
    case Kind::kArray:
      return !array->empty();
    case Kind::kObject:
      return !object->entries.empty();
    case Kind::kNamespace:
    case Kind::kFunction:
      return true;
  }
  return false;
}

const char* Value::type_name() const {
  switch (kind) {
    case Kind::kUndefined:
      return "Undefined";
    case Kind::kNone:
      return "NoneType";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kFloat:
      return "float";
    case Kind::kString:
      return "str";
    case Kind::kArray:
      return is_tuple ? "tuple" : "list";
    case Kind::kObject:
      return "dict";
    case Kind::kNamespace:
      return "Namespace";
    case Kind::kFunction:
      return "function";
  }
  return "?";
}

// ---- UTF-8 ---------------------------------------------------------------------------------

std::vector<uint32_t> decode_utf8(const std::string& s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) {
      out.push_back(0xDC00 | c);  // a lone byte, kept round-trippable (like surrogateescape)
      ++i;
      continue;
    }
    uint32_t cp = n == 1 ? c : c & (0x7F >> n);
    bool ok = true;
    for (int k = 1; k < n; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc >> 6) != 2) ok = false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (!ok) {
      out.push_back(0xDC00 | c);
      ++i;
      continue;
    }
    out.push_back(cp);
    i += n;
  }
  return out;
}

std::string encode_utf8(const std::vector<uint32_t>& code_points, size_t from, size_t to) {
  std::string out;
  to = std::min(to, code_points.size());
  for (size_t i = from; i < to; ++i) {
    uint32_t cp = code_points[i];
    // Lone bytes of invalid input were decoded to U+DC80..U+DCFF (surrogate escapes): write them back.
    if (cp >= 0xDC80 && cp <= 0xDCFF)
      out += static_cast<char>(cp & 0xFF);
    else
      append_utf8(out, cp);
  }
  return out;
}

bool is_python_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

// ---- str / repr / json ---------------------------------------------------------------------

namespace {

// Python's repr(float): shortest round-trip digits, fixed notation for 1e-4 <= |x| < 1e16.
std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  std::string sci(buf, end);
  bool negative = sci[0] == '-';
  if (negative) sci.erase(0, 1);
  size_t e = sci.find('e');
  std::string digits = sci.substr(0, e);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  int exponent = std::stoi(sci.substr(e + 1));
  int point = exponent + 1;  // value = 0.digits * 10^point
  std::string out;
  if (point > -4 && point <= 16) {
    if (point <= 0) {
      out = "0." + std::string(-point, '0') + digits;
    } else if (point >= static_cast<int>(digits.size())) {
      out = digits + std::string(point - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, point) + "." + digits.substr(point);
    }
  } else {
    out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char exp[16];
    std::snprintf(exp, sizeof(exp), "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    out += exp;
  }
  return negative ? "-" + out : out;
}

std::string string_repr(const std::string& s) {
  bool has_single = s.find('\'') != std::string::npos, has_double = s.find('"') != std::string::npos;
  char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (unsigned char c : s) {
    if (c == '\\' || c == static_cast<unsigned char>(quote)) {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + quote;
}

void json_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out += '"';
  for (uint32_t cp : decode_utf8(s)) {
    switch (cp) {
      case '"':
        out += "\\\"";
        continue;
      case '\\':
        out += "\\\\";
        continue;
      case '\n':
        out += "\\n";
        continue;
      case '\r':
        out += "\\r";
        continue;
      case '\t':
        out += "\\t";
        continue;
      case '\b':
        out += "\\b";
        continue;
      case '\f':
        out += "\\f";
        continue;
      default:
        break;
    }
    char buf[16];
    if (cp < 0x20 || (ensure_ascii && cp >= 0x7F)) {
      if (cp >= 0x10000) {
        uint32_t v = cp - 0x10000;
        std::snprintf(buf, sizeof(buf), "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
      } else {
        std::snprintf(buf, sizeof(buf), "\\u%04x", cp);
      }
      out += buf;
    } else {
      out += encode_utf8({cp});
    }
  }
  out += '"';
}

void json_value(std::string& out, const Value& v, const JsonOptions& o, int depth) {
  const std::string& item_sep = o.item_separator.empty() ? (o.indent >= 0 ? "," : ", ") : o.item_separator;
  const std::string& key_sep = o.key_separator.empty() ? ": " : o.key_separator;
  auto newline = [&](int level) {
    if (o.indent < 0) return;
    out += '\n';
    out.append(static_cast<size_t>(o.indent) * level, ' ');
  };
  switch (v.kind) {
    case Value::Kind::kNone:
      out += "null";
      return;
    case Value::Kind::kBool:
      out += v.boolean ? "true" : "false";
      return;
    case Value::Kind::kInt:
      out += std::to_string(v.integer);
      return;
    case Value::Kind::kFloat:
      if (std::isnan(v.number)) {
        out += "NaN";
      } else if (std::isinf(v.number)) {
        out += v.number < 0 ? "-Infinity" : "Infinity";
      } else {
        out += float_repr(v.number);
      }
      return;
    case Value::Kind::kString:
      json_string(out, v.string, o.ensure_ascii);
      return;
    case Value::Kind::kArray: {
      if (v.array->empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < v.array->size(); ++i) {
        if (i) out += item_sep;
        newline(depth + 1);
        json_value(out, (*v.array)[i], o, depth + 1);
      }
      newline(depth);
      out += ']';
      return;
    }
    case Value::Kind::kObject: {
      if (v.object->entries.empty()) {
        out += "{}";
        return;
      }
      std::vector<const std::pair<std::string, Value>*> entries;
      for (const auto& entry : v.object->entries) entries.push_back(&entry);
      if (o.sort_keys)
        std::stable_sort(entries.begin(), entries.end(),
                         [](auto* a, auto* b) { return a->first < b->first; });
      out += '{';
      for (size_t i = 0; i < entries.size(); ++i) {
        if (i) out += item_sep;
        newline(depth + 1);
        json_string(out, entries[i]->first, o.ensure_ascii);
        out += key_sep;
        json_value(out, entries[i]->second, o, depth + 1);
      }
      newline(depth);
      out += '}';
      return;
    }
    case Value::Kind::kUndefined:
    case Value::Kind::kNamespace:
    case Value::Kind::kFunction:
      break;
  }
  throw RuntimeError(std::string("tojson: object of type ") + v.type_name() + " is not JSON serializable");
}

}  // namespace

std::string to_python_repr(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kString:
      return string_repr(v.string);
    case Value::Kind::kArray: {
      std::string out = v.is_tuple ? "(" : "[";
      for (size_t i = 0; i < v.array->size(); ++i) out += (i ? ", " : "") + to_python_repr((*v.array)[i]);
      if (v.is_tuple && v.array->size() == 1) out += ",";
      return out + (v.is_tuple ? ")" : "]");
    }
    case Value::Kind::kObject: {
      std::string out = "{";
      bool first = true;
      for (const auto& [k, value] : v.object->entries) {
        out += (first ? "" : ", ") + string_repr(k) + ": " + to_python_repr(value);
        first = false;
      }
      return out + "}";
    }
    case Value::Kind::kNamespace:
      return "<Namespace " + to_python_repr(Value::from_object(*v.object)) + ">";
    default:
      return to_python_str(v);
  }
}

std::string to_python_str(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined:
      return "";
    case Value::Kind::kNone:
      return "None";
    case Value::Kind::kBool:
      return v.boolean ? "True" : "False";
    case Value::Kind::kInt:
      return std::to_string(v.integer);
    case Value::Kind::kFloat:
      return float_repr(v.number);
    case Value::Kind::kString:
      return v.string;
    case Value::Kind::kFunction:
      return "<function>";
    default:
      return to_python_repr(v);
  }
}

std::string to_json(const Value& value, const JsonOptions& options) {
  std::string out;
  json_value(out, value, options, 0);
  return out;
}

// ---- comparisons ---------------------------------------------------------------------------

namespace {
bool numeric(const Value& v) {
  return v.kind == Value::Kind::kInt || v.kind == Value::Kind::kFloat || v.kind == Value::Kind::kBool;
}
double as_double(const Value& v) {
  return v.kind == Value::Kind::kFloat ? v.number : v.kind == Value::Kind::kBool ? v.boolean : v.integer;
}
}  // namespace

bool python_equal(const Value& a, const Value& b) {
  if (numeric(a) && numeric(b)) {
    if (a.kind != Value::Kind::kFloat && b.kind != Value::Kind::kFloat)
      return (a.kind == Value::Kind::kBool ? a.boolean : a.integer) ==
             (b.kind == Value::Kind::kBool ? b.boolean : b.integer);
    return as_double(a) == as_double(b);
  }
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return true;
    case Value::Kind::kString:
      return a.string == b.string;
    case Value::Kind::kArray:
      if (a.is_tuple != b.is_tuple || a.array->size() != b.array->size()) return false;
      for (size_t i = 0; i < a.array->size(); ++i)
        if (!python_equal((*a.array)[i], (*b.array)[i])) return false;
      return true;
    case Value::Kind::kObject:
      if (a.object->entries.size() != b.object->entries.size()) return false;
      for (const auto& [k, v] : a.object->entries) {
        const Value* other = b.object->find(k);
        if (!other || !python_equal(v, *other)) return false;
      }
      return true;
    case Value::Kind::kNamespace:
      return a.object == b.object;
    case Value::Kind::kFunction:
      return a.function == b.function;
    default:
      return false;
  }
}

int python_compare(const Value& a, const Value& b) {
  if (numeric(a) && numeric(b)) {
    if (a.kind == Value::Kind::kInt && b.kind == Value::Kind::kInt)
      return a.integer < b.integer ? -1 : a.integer > b.integer ? 1 : 0;
    double x = as_double(a), y = as_double(b);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) return a.string < b.string ? -1 : a.string > b.string ? 1 : 0;
  if (a.is_array() && b.is_array()) {
    size_t n = std::min(a.array->size(), b.array->size());
    for (size_t i = 0; i < n; ++i)
      if (int c = python_compare((*a.array)[i], (*b.array)[i])) return c;
    return a.array->size() < b.array->size() ? -1 : a.array->size() > b.array->size() ? 1 : 0;
  }
  throw RuntimeError(std::string("'<' not supported between instances of '") + a.type_name() + "' and '" +
                     b.type_name() + "'");
}

// ---- containers ----------------------------------------------------------------------------

std::vector<Value> iterate(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined:
      return {};
    case Value::Kind::kArray:
      return *v.array;
    case Value::Kind::kObject: {
      std::vector<Value> keys;
      for (const auto& entry : v.object->entries) keys.push_back(Value::from_string(entry.first));
      return keys;
    }
    case Value::Kind::kString: {
      std::vector<Value> chars;
      auto cps = decode_utf8(v.string);
      for (size_t i = 0; i < cps.size(); ++i) chars.push_back(Value::from_string(encode_utf8(cps, i, i + 1)));
      return chars;
    }
    default:
      throw RuntimeError(std::string("'") + v.type_name() + "' object is not iterable");
  }
}

int64_t python_len(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined:
      return 0;
    case Value::Kind::kString:
      return static_cast<int64_t>(decode_utf8(v.string).size());
    case Value::Kind::kArray:
      return static_cast<int64_t>(v.array->size());
    case Value::Kind::kObject:
      return static_cast<int64_t>(v.object->entries.size());
    default:
      throw RuntimeError(std::string("object of type '") + v.type_name() + "' has no len()");
  }
}

namespace {
std::string undefined_hint(const Value& object, const std::string& what) {
  std::string hint = "'";
  hint += object.type_name();
  hint += " object' has no attribute ";
  return hint + what;
}
[[noreturn]] void undefined_access(const Value& object) {
  throw RuntimeError(object.string.empty() ? "access to an attribute of an undefined value"
                                           : object.string + " (accessing one of its attributes)");
}
}  // namespace

Value method_of(const Value& object, const std::string& name);  // jinja_builtins.cpp

Value get_attribute(const Value& object, const std::string& name) {
  if (object.is_undefined()) undefined_access(object);
  if (object.kind == Value::Kind::kNamespace) {
    if (const Value* v = object.object->find(name)) return *v;
    return Value::undefined(undefined_hint(object, "'" + name + "'"));
  }
  // Python getattr first (methods), then the item, like jinja2's environment.getattr.
  Value method = method_of(object, name);
  if (!method.is_undefined()) return method;
  if (object.is_object()) {
    if (const Value* v = object.object->find(name)) return *v;
  }
  return Value::undefined(undefined_hint(object, "'" + name + "'"));
}

Value get_item(const Value& object, const Value& key) {
  if (object.is_undefined()) undefined_access(object);
  if (object.is_object() || object.kind == Value::Kind::kNamespace) {
    if (key.is_string()) {
      if (const Value* v = object.object->find(key.string)) return *v;
      if (object.is_object()) return get_attribute(object, key.string);
    }
    return Value::undefined(undefined_hint(object, to_python_repr(key)));
  }
  if ((object.is_array() || object.is_string()) &&
      (key.kind == Value::Kind::kInt || key.kind == Value::Kind::kBool)) {
    int64_t index = key.kind == Value::Kind::kBool ? key.boolean : key.integer;
    if (object.is_array()) {
      int64_t n = static_cast<int64_t>(object.array->size());
      if (index < 0) index += n;
      if (index < 0 || index >= n) return Value::undefined("list index out of range");
      return (*object.array)[index];
    }
    auto cps = decode_utf8(object.string);
    int64_t n = static_cast<int64_t>(cps.size());
    if (index < 0) index += n;
    if (index < 0 || index >= n) return Value::undefined("string index out of range");
    return Value::from_string(encode_utf8(cps, index, index + 1));
  }
  if (key.is_string()) return get_attribute(object, key.string);
  return Value::undefined(undefined_hint(object, to_python_repr(key)));
}

Value slice(const Value& object, const Value& start_v, const Value& stop_v, const Value& step_v) {
  if (object.is_undefined()) undefined_access(object);
  auto index_of = [](const Value& v, const char* what) -> std::optional<int64_t> {
    if (v.is_undefined() || v.is_none()) return std::nullopt;
    if (v.kind != Value::Kind::kInt)
      throw RuntimeError(std::string("slice ") + what + " must be an integer or None");
    return v.integer;
  };
  std::optional<int64_t> start = index_of(start_v, "start"), stop = index_of(stop_v, "stop");
  int64_t step = index_of(step_v, "step").value_or(1);
  if (step == 0) throw RuntimeError("slice step cannot be zero");
  std::vector<uint32_t> cps;
  int64_t n;
  if (object.is_string()) {
    cps = decode_utf8(object.string);
    n = static_cast<int64_t>(cps.size());
  } else if (object.is_array()) {
    n = static_cast<int64_t>(object.array->size());
  } else {
    throw RuntimeError(std::string("'") + object.type_name() + "' object is not subscriptable with a slice");
  }
  // Python's PySlice_AdjustIndices.
  auto adjust = [&](std::optional<int64_t> v, int64_t if_missing) {
    if (!v) return if_missing;
    int64_t x = *v;
    if (x < 0) {
      x += n;
      if (x < 0) x = step < 0 ? -1 : 0;
    } else if (x >= n) {
      x = step < 0 ? n - 1 : n;
    }
    return x;
  };
  int64_t lo = adjust(start, step < 0 ? n - 1 : 0), hi = adjust(stop, step < 0 ? -1 : n);
  std::vector<int64_t> picked;
  for (int64_t i = lo; step > 0 ? i < hi : i > hi; i += step) picked.push_back(i);
  if (object.is_string()) {
    std::vector<uint32_t> out;
    for (int64_t i : picked) out.push_back(cps[i]);
    return Value::from_string(encode_utf8(out));
  }
  Array out;
  for (int64_t i : picked) out.push_back((*object.array)[i]);
  return Value::from_array(std::move(out), object.is_tuple);
}

}  // namespace swiftkv::tokenizer::jinja
