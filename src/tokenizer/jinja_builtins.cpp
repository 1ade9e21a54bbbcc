// Python methods of str / dict, jinja2's filters and tests, as chat templates use them.
// Case mapping (upper, lower, title, capitalize) is ASCII-only: other letters pass unchanged.
#include <algorithm>
#include <cmath>
#include <optional>

#include "tokenizer/jinja.h"

namespace swiftkv::tokenizer::jinja {
namespace {

using Args = std::vector<Value>;

// Positional-or-keyword argument `index` / `name` of a builtin, or nullopt.
std::optional<Value> argument(Args& args, Kwargs& kwargs, size_t index, const char* name) {
  if (index < args.size()) return args[index];
  for (auto& [k, v] : kwargs)
    if (k == name) return v;
  return std::nullopt;
}

void check_arguments(const std::string& what, Args& args, Kwargs& kwargs, size_t max_positional,
                     std::initializer_list<const char*> names) {
  if (args.size() > max_positional)
    throw RuntimeError(what + " takes at most " + std::to_string(max_positional) + " positional argument(s)");
  for (auto& [k, v] : kwargs)
    if (std::find_if(names.begin(), names.end(), [&](const char* n) { return k == n; }) == names.end())
      throw RuntimeError(what + " got an unexpected keyword argument '" + k + "'");
}

const std::string& require_string(const Value& v, const std::string& what) {
  if (!v.is_string()) throw RuntimeError(what + " must be a string, not " + v.type_name());
  return v.string;
}

int64_t require_int(const Value& v, const std::string& what) {
  if (v.kind == Value::Kind::kBool) return v.boolean;
  if (v.kind != Value::Kind::kInt) throw RuntimeError(what + " must be an integer, not " + v.type_name());
  return v.integer;
}

std::string ascii_map(const std::string& s, int (*f)(int)) {
  std::string out = s;
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x80) c = static_cast<char>(f(static_cast<unsigned char>(c)));
  return out;
}
std::string to_upper(const std::string& s) {
  return ascii_map(s, [](int c) { return std::toupper(c); });
}
std::string to_lower(const std::string& s) {
  return ascii_map(s, [](int c) { return std::tolower(c); });
}
bool ascii_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

std::string capitalize(const std::string& s) {
  std::string out = to_lower(s);
  if (!out.empty()) out[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(out[0])));
  return out;
}

// Python str.title: a cased letter after an uncased character starts a word.
std::string title(const std::string& s) {
  std::string out = s;
  bool previous_cased = false;
  for (char& c : out) {
    if (ascii_alpha(c)) {
      c = static_cast<char>(previous_cased ? std::tolower(c) : std::toupper(c));
      previous_cased = true;
    } else {
      previous_cased = false;
    }
  }
  return out;
}

// str.strip / lstrip / rstrip with Python's whitespace or the given characters.
std::string strip(const std::string& s, const std::optional<Value>& chars, bool left, bool right) {
  auto cps = decode_utf8(s);
  std::vector<uint32_t> set;
  bool whitespace = !chars || chars->is_none();
  if (!whitespace) set = decode_utf8(require_string(*chars, "strip() argument"));
  auto strippable = [&](uint32_t cp) {
    return whitespace ? is_python_space(cp) : std::find(set.begin(), set.end(), cp) != set.end();
  };
  size_t from = 0, to = cps.size();
  if (left)
    while (from < to && strippable(cps[from])) ++from;
  if (right)
    while (to > from && strippable(cps[to - 1])) --to;
  return encode_utf8(cps, from, to);
}

Value split(const std::string& s, const std::optional<Value>& sep_v, int64_t maxsplit) {
  Array parts;
  if (!sep_v || sep_v->is_none()) {
    // Runs of whitespace separate; no empty strings at either end.
    auto cps = decode_utf8(s);
    size_t i = 0, n = cps.size();
    while (true) {
      while (i < n && is_python_space(cps[i])) ++i;
      if (i >= n) break;
      if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) >= maxsplit) {
        size_t end = n;
        while (end > i && is_python_space(cps[end - 1])) --end;
        parts.push_back(Value::from_string(encode_utf8(cps, i, end)));
        break;
      }
      size_t start = i;
      while (i < n && !is_python_space(cps[i])) ++i;
      parts.push_back(Value::from_string(encode_utf8(cps, start, i)));
    }
    return Value::from_array(std::move(parts));
  }
  const std::string& sep = require_string(*sep_v, "split() separator");
  if (sep.empty()) throw RuntimeError("split(): empty separator");
  size_t start = 0;
  while (true) {
    size_t at = s.find(sep, start);
    if (at == std::string::npos || (maxsplit >= 0 && static_cast<int64_t>(parts.size()) >= maxsplit)) break;
    parts.push_back(Value::from_string(s.substr(start, at - start)));
    start = at + sep.size();
  }
  parts.push_back(Value::from_string(s.substr(start)));
  return Value::from_array(std::move(parts));
}

std::string replace(const std::string& s, const std::string& old_text, const std::string& new_text,
                    int64_t count) {
  std::string out;
  if (old_text.empty()) {
    // Python inserts between code points (and at both ends).
    auto cps = decode_utf8(s);
    int64_t done = 0;
    for (size_t i = 0; i <= cps.size(); ++i) {
      if (count < 0 || done < count) {
        out += new_text;
        ++done;
      }
      if (i < cps.size()) out += encode_utf8(cps, i, i + 1);
    }
    return out;
  }
  size_t start = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    size_t at = s.find(old_text, start);
    if (at == std::string::npos) break;
    out += s.substr(start, at - start) + new_text;
    start = at + old_text.size();
    ++done;
  }
  return out + s.substr(start);
}

bool starts_or_ends(const std::string& s, const Value& prefix, bool ends, const char* what) {
  auto one = [&](const Value& p) {
    const std::string& t = require_string(p, std::string(what) + "() argument");
    return ends ? s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0
                : s.rfind(t, 0) == 0;
  };
  if (prefix.is_array()) {
    for (const Value& p : *prefix.array)
      if (one(p)) return true;
    return false;
  }
  return one(prefix);
}

Value bound(Function f) { return Value::from_function(std::move(f)); }

Value string_method(const std::string& s, const std::string& name) {
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    bool left = name != "rstrip", right = name != "lstrip";
    return bound([s, name, left, right](Args& a, Kwargs& k) {
      check_arguments(name + "()", a, k, 1, {"chars"});
      return Value::from_string(strip(s, argument(a, k, 0, "chars"), left, right));
    });
  }
  if (name == "startswith" || name == "endswith") {
    bool ends = name == "endswith";
    return bound([s, name, ends](Args& a, Kwargs& k) {
      check_arguments(name + "()", a, k, 1, {});
      if (a.empty()) throw RuntimeError(name + "() takes one argument");
      return Value::from_bool(starts_or_ends(s, a[0], ends, name.c_str()));
    });
  }
  if (name == "split") {
    return bound([s](Args& a, Kwargs& k) {
      check_arguments("split()", a, k, 2, {"sep", "maxsplit"});
      auto maxsplit = argument(a, k, 1, "maxsplit");
      return split(s, argument(a, k, 0, "sep"), maxsplit ? require_int(*maxsplit, "maxsplit") : -1);
    });
  }
  if (name == "replace") {
    return bound([s](Args& a, Kwargs& k) {
      check_arguments("replace()", a, k, 3, {"count"});
      if (a.size() < 2) throw RuntimeError("replace() takes the old and the new string");
      auto count = argument(a, k, 2, "count");
      return Value::from_string(replace(s, require_string(a[0], "replace() old"),
                                        require_string(a[1], "replace() new"),
                                        count ? require_int(*count, "replace() count") : -1));
    });
  }
  using Transform = std::string (*)(const std::string&);
  Transform transform = name == "upper"        ? &to_upper
                        : name == "lower"      ? &to_lower
                        : name == "title"      ? &title
                        : name == "capitalize" ? &capitalize
                                               : nullptr;
  if (transform) {
    return bound([s, name, transform](Args& a, Kwargs& k) {
      check_arguments(name + "()", a, k, 0, {});
      return Value::from_string(transform(s));
    });
  }
  if (name == "find" || name == "count") {
    bool find = name == "find";
    return bound([s, name, find](Args& a, Kwargs& k) {
      check_arguments(name + "()", a, k, 1, {});
      if (a.empty()) throw RuntimeError(name + "() takes one argument");
      const std::string& t = require_string(a[0], name + "() argument");
      if (find) {
        size_t at = s.find(t);
        return Value::from_int(
            at == std::string::npos ? -1 : static_cast<int64_t>(decode_utf8(s.substr(0, at)).size()));
      }
      if (t.empty()) return Value::from_int(static_cast<int64_t>(decode_utf8(s).size()) + 1);
      int64_t n = 0;
      for (size_t at = s.find(t); at != std::string::npos; at = s.find(t, at + t.size())) ++n;
      return Value::from_int(n);
    });
  }
  if (name == "join") {
    return bound([s](Args& a, Kwargs& k) {
      check_arguments("join()", a, k, 1, {});
      if (a.empty()) throw RuntimeError("join() takes one argument");
      std::string out;
      bool first = true;
      for (const Value& item : iterate(a[0])) {
        out += (first ? "" : s) + require_string(item, "join() item");
        first = false;
      }
      return Value::from_string(out);
    });
  }
  return Value::undefined();
}

Value dict_method(const Value& object, const std::string& name) {
  if (name == "items" || name == "keys" || name == "values") {
    return bound([object, name](Args& a, Kwargs& k) {
      check_arguments(name + "()", a, k, 0, {});
      Array out;
      for (const auto& [key, value] : object.object->entries) {
        if (name == "items") {
          out.push_back(Value::from_array({Value::from_string(key), value}, /*tuple=*/true));
        } else {
          out.push_back(name == "keys" ? Value::from_string(key) : value);
        }
      }
      return Value::from_array(std::move(out));
    });
  }
  if (name == "get") {
    return bound([object](Args& a, Kwargs& k) {
      check_arguments("get()", a, k, 2, {});
      if (a.empty()) throw RuntimeError("get() takes a key");
      if (a[0].is_string())
        if (const Value* v = object.object->find(a[0].string)) return *v;
      return a.size() > 1 ? a[1] : Value::none();
    });
  }
  return Value::undefined();
}

}  // namespace

// A bound method of a value, or Undefined when it has none by that name (a Python method
// the subset lacks then fails when called, naming it).
Value method_of(const Value& object, const std::string& name) {
  if (object.is_string()) return string_method(object.string, name);
  if (object.is_object()) return dict_method(object, name);
  return Value::undefined();
}

Value call_function(const Value& callee, Args& args, Kwargs& kwargs) {
  if (callee.kind == Value::Kind::kFunction) return (*callee.function)(args, kwargs);
  if (callee.is_undefined())
    throw RuntimeError(callee.string.empty() ? "call of an undefined value" : callee.string + " (called)");
  throw RuntimeError(std::string("'") + callee.type_name() + "' object is not callable");
}

// ---- tests ---------------------------------------------------------------------------------

bool apply_test(const std::string& name, const Value& v, Args& args) {
  auto arg = [&](size_t i) -> const Value& {
    if (i >= args.size()) throw RuntimeError("test '" + name + "' needs an argument");
    return args[i];
  };
  using K = Value::Kind;
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "mapping") return v.is_object();
  if (name == "iterable") return v.is_string() || v.is_array() || v.is_object() || v.is_undefined();
  if (name == "sequence") return v.is_string() || v.is_array() || v.is_object() || v.is_undefined();
  if (name == "number") return v.kind == K::kInt || v.kind == K::kFloat || v.kind == K::kBool;
  if (name == "integer") return v.kind == K::kInt;
  if (name == "float") return v.kind == K::kFloat;
  if (name == "boolean") return v.kind == K::kBool;
  if (name == "true") return v.kind == K::kBool && v.boolean;
  if (name == "false") return v.kind == K::kBool && !v.boolean;
  if (name == "callable") return v.kind == K::kFunction;
  if (name == "odd" || name == "even") {
    int64_t i = require_int(v, "test '" + name + "' operand");
    return ((i % 2) != 0) == (name == "odd");
  }
  if (name == "divisibleby") {
    int64_t d = require_int(arg(0), "divisibleby argument");
    if (d == 0) throw RuntimeError("divisibleby(0)");
    return require_int(v, "divisibleby operand") % d == 0;
  }
  if (name == "eq" || name == "equalto") return python_equal(v, arg(0));
  if (name == "ne") return !python_equal(v, arg(0));
  if (name == "lt") return python_compare(v, arg(0)) < 0;
  if (name == "le") return python_compare(v, arg(0)) <= 0;
  if (name == "gt") return python_compare(v, arg(0)) > 0;
  if (name == "ge") return python_compare(v, arg(0)) >= 0;
  if (name == "in") {
    const Value& container = arg(0);
    if (container.is_string())
      return container.string.find(require_string(v, "'in <string>' operand")) != std::string::npos;
    for (const Value& item : iterate(container))
      if (python_equal(item, v)) return true;
    return false;
  }
  if (name == "lower") return v.is_string() && to_lower(v.string) == v.string;
  if (name == "upper") return v.is_string() && to_upper(v.string) == v.string;
  if (name == "sameas") {
    const Value& other = arg(0);
    if (v.kind != other.kind) return false;
    switch (v.kind) {
      case K::kArray:
        return v.array == other.array;
      case K::kObject:
      case K::kNamespace:
        return v.object == other.object;
      case K::kFunction:
        return v.function == other.function;
      default:
        return python_equal(v, other);
    }
  }
  throw RuntimeError("unsupported test '" + name + "'");
}

// ---- filters -------------------------------------------------------------------------------

namespace {

// jinja2's attribute lookup for filters: "a.b.0" walks dicts and lists.
Value attribute_path(const Value& item, const std::string& path) {
  Value v = item;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    bool digits = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit);
    if (v.is_undefined()) return v;
    v = digits ? get_item(v, Value::from_int(std::stoll(part))) : get_item(v, Value::from_string(part));
    if (dot == std::string::npos) return v;
    start = dot + 1;
  }
}

std::string attribute_name(const Value& v) {
  if (v.kind == Value::Kind::kInt) return std::to_string(v.integer);
  return require_string(v, "attribute");
}

Value sorted(const Value& operand, bool reverse, bool case_sensitive, const std::optional<Value>& attribute) {
  std::vector<Value> items = iterate(operand);
  auto key = [&](const Value& item) {
    Value k = attribute && !attribute->is_none() ? attribute_path(item, attribute_name(*attribute)) : item;
    if (!case_sensitive && k.is_string()) k = Value::from_string(to_lower(k.string));
    return k;
  };
  std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
    int c = python_compare(key(a), key(b));
    return reverse ? c > 0 : c < 0;
  });
  return Value::from_array(std::move(items));
}

Value to_int(const Value& v, const Value& fallback, int base) {
  switch (v.kind) {
    case Value::Kind::kInt:
      return v;
    case Value::Kind::kBool:
      return Value::from_int(v.boolean);
    case Value::Kind::kFloat:
      return std::isfinite(v.number) ? Value::from_int(static_cast<int64_t>(v.number)) : fallback;
    case Value::Kind::kString: {
      std::string s = strip(v.string, std::nullopt, true, true);
      s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
      try {
        size_t used = 0;
        int64_t i = std::stoll(s, &used, base);
        if (used == s.size()) return Value::from_int(i);
      } catch (const std::exception&) {
      }
      try {
        size_t used = 0;
        double d = std::stod(s, &used);
        if (used == s.size() && std::isfinite(d)) return Value::from_int(static_cast<int64_t>(d));
      } catch (const std::exception&) {
      }
      return fallback;
    }
    default:
      return fallback;
  }
}

Value to_float(const Value& v, const Value& fallback) {
  switch (v.kind) {
    case Value::Kind::kInt:
      return Value::from_float(static_cast<double>(v.integer));
    case Value::Kind::kBool:
      return Value::from_float(v.boolean);
    case Value::Kind::kFloat:
      return v;
    case Value::Kind::kString: {
      std::string s = strip(v.string, std::nullopt, true, true);
      try {
        size_t used = 0;
        double d = std::stod(s, &used);
        if (used == s.size()) return Value::from_float(d);
      } catch (const std::exception&) {
      }
      return fallback;
    }
    default:
      return fallback;
  }
}

Value select_items(const Value& operand, Args& args, Kwargs& kwargs, bool by_attribute, bool select,
                   const std::string& filter) {
  size_t next = 0;
  std::string attribute;
  if (by_attribute) {
    if (args.empty()) throw RuntimeError(filter + " needs an attribute name");
    attribute = attribute_name(args[next++]);
  }
  std::string test;
  Args test_args;
  if (next < args.size()) {
    test = require_string(args[next++], filter + " test name");
    test_args.assign(args.begin() + next, args.end());
  }
  if (!kwargs.empty()) throw RuntimeError(filter + " takes no keyword arguments");
  Array out;
  for (const Value& item : iterate(operand)) {
    Value subject = by_attribute ? attribute_path(item, attribute) : item;
    bool ok = test.empty() ? subject.truthy() : apply_test(test, subject, test_args);
    if (ok == select) out.push_back(item);
  }
  return Value::from_array(std::move(out));
}

}  // namespace

Value apply_filter(const std::string& name, const Value& v, Args& args, Kwargs& kwargs) {
  auto opt = [&](size_t i, const char* key) { return argument(args, kwargs, i, key); };
  auto str = [&] { return to_python_str(v); };
  if (name == "safe") return v;
  if (name == "trim") {
    check_arguments("trim", args, kwargs, 1, {"chars"});
    return Value::from_string(strip(str(), opt(0, "chars"), true, true));
  }
  if (name == "tojson") {
    // transformers' own tojson: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
    check_arguments("tojson", args, kwargs, 4, {"ensure_ascii", "indent", "separators", "sort_keys"});
    JsonOptions options;
    if (auto a = opt(0, "ensure_ascii")) options.ensure_ascii = a->truthy();
    if (auto a = opt(1, "indent"); a && !a->is_none())
      options.indent = static_cast<int>(require_int(*a, "indent"));
    if (auto a = opt(2, "separators"); a && !a->is_none()) {
      if (!a->is_array() || a->array->size() != 2)
        throw RuntimeError("tojson separators must be a pair of strings");
      options.item_separator = require_string((*a->array)[0], "separator");
      options.key_separator = require_string((*a->array)[1], "separator");
    }
    if (auto a = opt(3, "sort_keys")) options.sort_keys = a->truthy();
    return Value::from_string(to_json(v, options));
  }
  if (name == "length" || name == "count") return Value::from_int(python_len(v));
  if (name == "default" || name == "d") {
    check_arguments(name, args, kwargs, 2, {"default_value", "boolean"});
    Value fallback = opt(0, "default_value").value_or(Value::from_string(""));
    auto boolean = opt(1, "boolean");
    bool use = v.is_undefined() || (boolean && boolean->truthy() && !v.truthy());
    return use ? fallback : v;
  }
  if (name == "first" || name == "last") {
    std::vector<Value> items = iterate(v);
    if (items.empty()) return Value::undefined("no " + name + " item of an empty sequence");
    return name == "first" ? items.front() : items.back();
  }
  if (name == "join") {
    check_arguments("join", args, kwargs, 2, {"d", "attribute"});
    std::string separator = opt(0, "d") ? to_python_str(*opt(0, "d")) : "";
    auto attribute = opt(1, "attribute");
    std::string out;
    bool first = true;
    for (const Value& item : iterate(v)) {
      Value x = attribute && !attribute->is_none() ? attribute_path(item, attribute_name(*attribute)) : item;
      out += (first ? "" : separator) + to_python_str(x);
      first = false;
    }
    return Value::from_string(out);
  }
  if (name == "upper") return Value::from_string(to_upper(str()));
  if (name == "lower") return Value::from_string(to_lower(str()));
  if (name == "capitalize") return Value::from_string(capitalize(str()));
  if (name == "title") return Value::from_string(title(str()));
  if (name == "replace") {
    check_arguments("replace", args, kwargs, 3, {"old", "new", "count"});
    auto old_text = opt(0, "old"), new_text = opt(1, "new"), count = opt(2, "count");
    if (!old_text || !new_text) throw RuntimeError("replace filter takes the old and the new string");
    return Value::from_string(replace(str(), to_python_str(*old_text), to_python_str(*new_text),
                                      count && !count->is_none() ? require_int(*count, "count") : -1));
  }
  if (name == "list") return Value::from_array(iterate(v));
  if (name == "string") return Value::from_string(str());
  if (name == "int") {
    check_arguments("int", args, kwargs, 2, {"default", "base"});
    auto base = opt(1, "base");
    return to_int(v, opt(0, "default").value_or(Value::from_int(0)),
                  base ? static_cast<int>(require_int(*base, "base")) : 10);
  }
  if (name == "float") {
    check_arguments("float", args, kwargs, 1, {"default"});
    return to_float(v, opt(0, "default").value_or(Value::from_float(0.0)));
  }
  if (name == "abs") {
    if (v.kind == Value::Kind::kInt) return Value::from_int(v.integer < 0 ? -v.integer : v.integer);
    if (v.kind == Value::Kind::kFloat) return Value::from_float(std::fabs(v.number));
    throw RuntimeError(std::string("bad operand type for abs(): '") + v.type_name() + "'");
  }
  if (name == "map") {
    Array out;
    if (auto attribute = argument(args, kwargs, 99, "attribute")) {
      check_arguments("map", args, kwargs, 0, {"attribute", "default"});
      auto fallback = argument(args, kwargs, 99, "default");
      for (const Value& item : iterate(v)) {
        Value x = attribute_path(item, attribute_name(*attribute));
        out.push_back(x.is_undefined() && fallback ? *fallback : x);
      }
    } else {
      if (args.empty()) throw RuntimeError("map needs a filter name or attribute=");
      std::string filter = require_string(args[0], "map filter name");
      static const char* const kMappable[] = {"abs",   "capitalize", "d",     "default", "first", "float",
                                              "int",   "join",       "last",  "length",  "list",  "lower",
                                              "safe",  "string",     "title", "tojson",  "trim",  "upper",
                                              "count", "replace",    "round"};
      if (std::find_if(std::begin(kMappable), std::end(kMappable),
                       [&](const char* n) { return filter == n; }) == std::end(kMappable))
        throw RuntimeError("unsupported filter '" + filter + "' in map()");
      Args rest(args.begin() + 1, args.end());
      for (const Value& item : iterate(v)) {
        Args a = rest;
        Kwargs k = kwargs;
        out.push_back(apply_filter(filter, item, a, k));
      }
    }
    return Value::from_array(std::move(out));
  }
  if (name == "select" || name == "reject")
    return select_items(v, args, kwargs, false, name == "select", name);
  if (name == "selectattr" || name == "rejectattr")
    return select_items(v, args, kwargs, true, name == "selectattr", name);
  if (name == "unique") {
    check_arguments("unique", args, kwargs, 2, {"case_sensitive", "attribute"});
    auto case_sensitive = opt(0, "case_sensitive");
    auto attribute = opt(1, "attribute");
    Array out;
    std::vector<Value> seen;
    for (const Value& item : iterate(v)) {
      Value k = attribute && !attribute->is_none() ? attribute_path(item, attribute_name(*attribute)) : item;
      if (!(case_sensitive && case_sensitive->truthy()) && k.is_string())
        k = Value::from_string(to_lower(k.string));
      if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return python_equal(s, k); })) {
        seen.push_back(k);
        out.push_back(item);
      }
    }
    return Value::from_array(std::move(out));
  }
  if (name == "sort") {
    check_arguments("sort", args, kwargs, 3, {"reverse", "case_sensitive", "attribute"});
    auto reverse = opt(0, "reverse"), case_sensitive = opt(1, "case_sensitive");
    return sorted(v, reverse && reverse->truthy(), case_sensitive && case_sensitive->truthy(),
                  opt(2, "attribute"));
  }
  if (name == "reverse") {
    if (v.is_string()) {
      auto cps = decode_utf8(v.string);
      std::reverse(cps.begin(), cps.end());
      return Value::from_string(encode_utf8(cps));
    }
    std::vector<Value> items = iterate(v);
    std::reverse(items.begin(), items.end());
    return Value::from_array(std::move(items));
  }
  if (name == "items") {
    if (v.is_undefined()) return Value::from_array({});
    if (!v.is_object()) throw RuntimeError(std::string("items filter needs a mapping, not ") + v.type_name());
    Array out;
    for (const auto& [key, value] : v.object->entries)
      out.push_back(Value::from_array({Value::from_string(key), value}, true));
    return Value::from_array(std::move(out));
  }
  if (name == "dictsort") {
    check_arguments("dictsort", args, kwargs, 3, {"case_sensitive", "by", "reverse"});
    if (!v.is_object()) throw RuntimeError(std::string("dictsort needs a mapping, not ") + v.type_name());
    auto case_sensitive = opt(0, "case_sensitive"), by = opt(1, "by"), reverse = opt(2, "reverse");
    Array pairs;
    for (const auto& [key, value] : v.object->entries)
      pairs.push_back(Value::from_array({Value::from_string(key), value}, true));
    bool by_value = by && to_python_str(*by) == "value";
    return sorted(Value::from_array(std::move(pairs)), reverse && reverse->truthy(),
                  case_sensitive && case_sensitive->truthy(), Value::from_int(by_value ? 1 : 0));
  }
  if (name == "indent") {
    check_arguments("indent", args, kwargs, 3, {"width", "first", "blank"});
    auto width = opt(0, "width"), first = opt(1, "first"), blank = opt(2, "blank");
    std::string pad = !width               ? "    "
                      : width->is_string() ? width->string
                                           : std::string(require_int(*width, "indent width"), ' ');
    std::string s = str(), out;
    size_t start = 0;
    bool is_first = true;
    while (true) {
      size_t nl = s.find('\n', start);
      std::string line = s.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
      bool indent = is_first ? (first && first->truthy()) : (!line.empty() || (blank && blank->truthy()));
      out += (indent ? pad : "") + line;
      if (nl == std::string::npos) break;
      out += '\n';
      start = nl + 1;
      is_first = false;
    }
    return Value::from_string(out);
  }
  if (name == "sum") {
    check_arguments("sum", args, kwargs, 2, {"attribute", "start"});
    auto attribute = opt(0, "attribute");
    Value total = opt(1, "start").value_or(Value::from_int(0));
    for (const Value& item : iterate(v)) {
      Value x = attribute && !attribute->is_none() ? attribute_path(item, attribute_name(*attribute)) : item;
      if (!(x.is_number() || x.kind == Value::Kind::kBool) || !(total.is_number()))
        throw RuntimeError("sum needs numbers");
      if (total.kind == Value::Kind::kInt && x.kind != Value::Kind::kFloat) {
        total = Value::from_int(total.integer + (x.kind == Value::Kind::kBool ? x.boolean : x.integer));
      } else {
        double a = total.kind == Value::Kind::kFloat ? total.number : static_cast<double>(total.integer);
        double b = x.kind == Value::Kind::kFloat  ? x.number
                   : x.kind == Value::Kind::kBool ? x.boolean
                                                  : static_cast<double>(x.integer);
        total = Value::from_float(a + b);
      }
    }
    return total;
  }
  if (name == "min" || name == "max") {
    check_arguments(name, args, kwargs, 2, {"case_sensitive", "attribute"});
    auto case_sensitive = opt(0, "case_sensitive");
    Value s = sorted(v, name == "max", case_sensitive && case_sensitive->truthy(), opt(1, "attribute"));
    if (s.array->empty()) return Value::undefined("no " + name + " item of an empty sequence");
    return s.array->front();
  }
  if (name == "round") {
    check_arguments("round", args, kwargs, 2, {"precision", "method"});
    auto precision = opt(0, "precision"), method = opt(1, "method");
    double x = v.kind == Value::Kind::kFloat ? v.number
               : v.kind == Value::Kind::kInt ? static_cast<double>(v.integer)
                                             : throw RuntimeError("round needs a number");
    double scale =
        std::pow(10.0, precision ? static_cast<double>(require_int(*precision, "precision")) : 0.0);
    std::string how = method ? to_python_str(*method) : "common";
    double r = how == "ceil"    ? std::ceil(x * scale)
               : how == "floor" ? std::floor(x * scale)
                                : std::round(x * scale);
    return Value::from_float(r / scale);
  }
  throw RuntimeError("unsupported filter '" + name + "'");
}

}  // namespace swiftkv::tokenizer::jinja
