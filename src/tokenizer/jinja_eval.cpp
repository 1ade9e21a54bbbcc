// Tree-walking evaluator with jinja2's scoping: {% set %} writes the innermost scope; each
// for-loop iteration and each macro call gets a fresh scope, so assignments there do not
// leak out (namespace() objects are the way out, as in jinja2); if-blocks share their scope.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <map>

#include "common/error.h"
#include "tokenizer/jinja.h"

namespace swiftkv::tokenizer::jinja {
namespace {

struct Scope {
  std::map<std::string, Value> variables;
  std::shared_ptr<Scope> parent;

  const Value* lookup(const std::string& name) const {
    for (const Scope* s = this; s; s = s->parent.get()) {
      auto it = s->variables.find(name);
      if (it != s->variables.end()) return &it->second;
    }
    return nullptr;
  }
};
using ScopePtr = std::shared_ptr<Scope>;

enum class Flow { kNormal, kBreak, kContinue };

[[noreturn]] void fail(int line, const std::string& message) {
  throw Error("chat template line " + std::to_string(line) + ": " + message);
}

// strftime for the date a render pins ("%d %b %Y", e.g. "26 Jul 2024") or today.
std::string format_date(const std::string& format, const std::string& pinned) {
  static const char* const kMonths[] = {"January",   "February", "March",    "April",
                                        "May",       "June",     "July",     "August",
                                        "September", "October",  "November", "December"};
  static const char* const kDays[] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                      "Thursday", "Friday", "Saturday"};
  int day, month, year, hour = 0, minute = 0, second = 0;
  if (pinned.empty()) {
    std::time_t now = std::time(nullptr);
    std::tm local{};
    localtime_r(&now, &local);
    day = local.tm_mday, month = local.tm_mon + 1, year = local.tm_year + 1900;
    hour = local.tm_hour, minute = local.tm_min, second = local.tm_sec;
  } else {
    char name[4] = {};
    if (std::sscanf(pinned.c_str(), "%d %3s %d", &day, name, &year) != 3)
      throw RuntimeError("the pinned date '" + pinned + "' is not like '26 Jul 2024'");
    month = 0;
    for (int m = 0; m < 12; ++m)
      if (std::string(kMonths[m], 3) == name) month = m + 1;
    if (month == 0) throw RuntimeError("the pinned date '" + pinned + "' has no English month abbreviation");
  }
  std::chrono::year_month_day ymd{std::chrono::year(year), std::chrono::month(month), std::chrono::day(day)};
  unsigned weekday = std::chrono::weekday(std::chrono::sys_days(ymd)).c_encoding();
  auto two = [](int x) {
    char buf[16];
    std::snprintf(buf, sizeof(buf), "%02d", x);
    return std::string(buf);
  };
  std::string out;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] != '%' || i + 1 == format.size()) {
      out += format[i];
      continue;
    }
    char c = format[++i];
    switch (c) {
      case 'd':
        out += two(day);
        break;
      case 'm':
        out += two(month);
        break;
      case 'Y':
        out += std::to_string(year);
        break;
      case 'y':
        out += two(year % 100);
        break;
      case 'b':
        out += std::string(kMonths[month - 1], 3);
        break;
      case 'B':
        out += kMonths[month - 1];
        break;
      case 'a':
        out += std::string(kDays[weekday], 3);
        break;
      case 'A':
        out += kDays[weekday];
        break;
      case 'H':
        out += two(hour);
        break;
      case 'M':
        out += two(minute);
        break;
      case 'S':
        out += two(second);
        break;
      case '%':
        out += '%';
        break;
      default:
        throw RuntimeError(std::string("strftime_now: unsupported directive %") + c);
    }
  }
  return out;
}

class Interpreter {
 public:
  explicit Interpreter(const RenderContext& context) : context_(context) {}

  std::string run(const Template& tmpl) {
    auto globals = std::make_shared<Scope>();
    for (const auto& [name, value] : context_.globals.entries) globals->variables[name] = value;
    install_builtins(*globals);
    auto top = std::make_shared<Scope>();
    top->parent = globals;
    std::string out;
    Flow flow = exec(tmpl.body, top, out);
    if (flow != Flow::kNormal) throw Error("chat template: {% break %} / {% continue %} outside a loop");
    return out;
  }

 private:
  void install_builtins(Scope& scope) {
    auto define = [&](const char* name, Function f) {
      if (!scope.variables.count(name)) scope.variables[name] = Value::from_function(std::move(f));
    };
    define("raise_exception", [](std::vector<Value>& args, Kwargs&) -> Value {
      throw RaisedException(args.empty() ? std::string("raise_exception() called") : to_python_str(args[0]));
    });
    std::string date = context_.date;
    define("strftime_now", [date](std::vector<Value>& args, Kwargs&) {
      if (args.size() != 1 || !args[0].is_string())
        throw RuntimeError("strftime_now(format) takes one string");
      return Value::from_string(format_date(args[0].string, date));
    });
    define("namespace", [](std::vector<Value>& args, Kwargs& kwargs) {
      Object o;
      if (args.size() > 1) throw RuntimeError("namespace() takes at most one positional argument");
      if (!args.empty()) {
        if (!args[0].is_object()) throw RuntimeError("namespace() positional argument must be a mapping");
        o = *args[0].object;
      }
      for (auto& [k, v] : kwargs) o.set(k, v);
      return Value::namespace_of(std::move(o));
    });
    define("dict", [](std::vector<Value>& args, Kwargs& kwargs) {
      Object o;
      if (!args.empty()) throw RuntimeError("dict() takes keyword arguments only");
      for (auto& [k, v] : kwargs) o.set(k, v);
      return Value::from_object(std::move(o));
    });
    define("range", [](std::vector<Value>& args, Kwargs& kwargs) {
      if (args.empty() || args.size() > 3 || !kwargs.empty())
        throw RuntimeError("range() takes 1 to 3 integers");
      std::vector<int64_t> a;
      for (const Value& v : args) {
        if (v.kind != Value::Kind::kInt) throw RuntimeError("range() takes integers");
        a.push_back(v.integer);
      }
      int64_t start = a.size() == 1 ? 0 : a[0], stop = a.size() == 1 ? a[0] : a[1],
              step = a.size() == 3 ? a[2] : 1;
      if (step == 0) throw RuntimeError("range() step must not be zero");
      Array out;
      for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
        out.push_back(Value::from_int(i));
        if (out.size() > 1000000) throw RuntimeError("range() too long for a chat template");
      }
      return Value::from_array(std::move(out));
    });
  }

  // ---- statements ----

  Flow exec(const Body& body, const ScopePtr& scope, std::string& out) {
    for (const auto& statement : body) {
      Flow flow = exec(*statement, scope, out);
      if (flow != Flow::kNormal) return flow;
    }
    return Flow::kNormal;
  }

  Flow exec(const Stmt& s, const ScopePtr& scope, std::string& out) {
    switch (s.kind) {
      case Stmt::Kind::kText:
        out += s.text;
        return Flow::kNormal;
      case Stmt::Kind::kOutput:
        out += to_python_str(eval(*s.expr, scope));
        return Flow::kNormal;
      case Stmt::Kind::kIf:
        for (size_t i = 0; i < s.bodies.size(); ++i)
          if (i >= s.conditions.size() || eval(*s.conditions[i], scope).truthy())
            return exec(s.bodies[i], scope, out);
        return Flow::kNormal;
      case Stmt::Kind::kFor:
        return exec_for(s, scope, out);
      case Stmt::Kind::kSet: {
        Value value = eval(*s.expr, scope);
        if (!s.attribute.empty()) {
          const Value* ns = scope->lookup(s.targets[0]);
          if (!ns || ns->kind != Value::Kind::kNamespace)
            fail(s.line, "cannot assign attribute '" + s.attribute + "' of '" + s.targets[0] +
                             "': it is not a namespace()");
          ns->object->set(s.attribute, std::move(value));
        } else {
          assign(s.targets, value, *scope, s.line);
        }
        return Flow::kNormal;
      }
      case Stmt::Kind::kSetBlock: {
        std::string captured;
        exec_checked(s.bodies[0], scope, captured, s.line);
        scope->variables[s.targets[0]] = Value::from_string(captured);
        return Flow::kNormal;
      }
      case Stmt::Kind::kMacro:
        define_macro(s, scope);
        return Flow::kNormal;
      case Stmt::Kind::kBreak:
        return Flow::kBreak;
      case Stmt::Kind::kContinue:
        return Flow::kContinue;
      case Stmt::Kind::kFilterBlock: {
        std::string captured;
        Flow flow = exec(s.bodies[0], scope, captured);
        out += to_python_str(apply_filter_node(*s.expr, Value::from_string(captured), scope));
        return flow;
      }
      case Stmt::Kind::kWith: {
        auto inner = std::make_shared<Scope>();
        inner->parent = scope;
        for (const auto& [name, expr] : s.parameters) inner->variables[name] = eval(*expr, scope);
        return exec(s.bodies[0], inner, out);
      }
    }
    return Flow::kNormal;
  }

  void exec_checked(const Body& body, const ScopePtr& scope, std::string& out, int line) {
    if (exec(body, scope, out) != Flow::kNormal) fail(line, "{% break %} / {% continue %} outside a loop");
  }

  static void assign(const std::vector<std::string>& targets, const Value& value, Scope& scope, int line) {
    if (targets.size() == 1) {
      scope.variables[targets[0]] = value;
      return;
    }
    std::vector<Value> items;
    try {
      items = iterate(value);
    } catch (const RuntimeError& e) {
      fail(line, std::string("cannot unpack: ") + e.what());
    }
    if (items.size() != targets.size())
      fail(line, "cannot unpack " + std::to_string(items.size()) + " values into " +
                     std::to_string(targets.size()) + " names");
    for (size_t i = 0; i < targets.size(); ++i) scope.variables[targets[i]] = items[i];
  }

  Flow exec_for(const Stmt& s, const ScopePtr& scope, std::string& out) {
    Value iterable = eval(*s.expr, scope);
    std::vector<Value> items;
    try {
      items = iterate(iterable);
    } catch (const RuntimeError& e) {
      fail(s.line, std::string("for loop: ") + e.what());
    }
    if (s.loop_filter) {
      std::vector<Value> kept;
      for (const Value& item : items) {
        auto probe = std::make_shared<Scope>();
        probe->parent = scope;
        assign(s.targets, item, *probe, s.line);
        if (eval(*s.loop_filter, probe).truthy()) kept.push_back(item);
      }
      items = std::move(kept);
    }
    int64_t n = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < n; ++i) {
      auto iteration = std::make_shared<Scope>();
      iteration->parent = scope;
      Object loop;
      loop.set("index", Value::from_int(i + 1));
      loop.set("index0", Value::from_int(i));
      loop.set("revindex", Value::from_int(n - i));
      loop.set("revindex0", Value::from_int(n - i - 1));
      loop.set("first", Value::from_bool(i == 0));
      loop.set("last", Value::from_bool(i == n - 1));
      loop.set("length", Value::from_int(n));
      loop.set("depth", Value::from_int(1));
      loop.set("depth0", Value::from_int(0));
      loop.set("previtem", i > 0 ? items[i - 1] : Value::undefined("there is no previous item"));
      loop.set("nextitem", i + 1 < n ? items[i + 1] : Value::undefined("there is no next item"));
      loop.set("cycle", Value::from_function([i](std::vector<Value>& args, Kwargs&) {
                 if (args.empty()) throw RuntimeError("loop.cycle() needs at least one value");
                 return args[static_cast<size_t>(i) % args.size()];
               }));
      iteration->variables["loop"] = Value::from_object(std::move(loop));
      assign(s.targets, items[i], *iteration, s.line);
      Flow flow = exec(s.bodies[0], iteration, out);
      if (flow == Flow::kBreak) break;
    }
    if (n == 0 && s.bodies.size() > 1) return exec(s.bodies[1], scope, out);
    return Flow::kNormal;
  }

  void define_macro(const Stmt& s, const ScopePtr& scope) {
    const Stmt* macro = &s;
    std::weak_ptr<Scope> defining = scope;  // the macro lives in that scope: no cycle
    scope->variables[s.text] =
        Value::from_function([this, macro, defining](std::vector<Value>& args, Kwargs& kwargs) {
          // A macro that calls itself without end must not overflow the stack (jinja2 raises too).
          if (macro_depth_ >= kMaxMacroDepth)
            throw RuntimeError("macro '" + macro->text + "' nested more than " +
                               std::to_string(kMaxMacroDepth) + " calls deep");
          struct DepthGuard {
            int& depth;
            explicit DepthGuard(int& d) : depth(++d) {}
            ~DepthGuard() { --depth; }
          } guard(macro_depth_);
          auto call = std::make_shared<Scope>();
          call->parent = defining.lock();
          const auto& parameters = macro->parameters;
          if (args.size() > parameters.size())
            throw RuntimeError("macro '" + macro->text + "' takes not more than " +
                               std::to_string(parameters.size()) + " argument(s)");
          for (size_t i = 0; i < parameters.size(); ++i) {
            const auto& [name, default_value] = parameters[i];
            if (i < args.size()) {
              call->variables[name] = args[i];
              continue;
            }
            auto it =
                std::find_if(kwargs.begin(), kwargs.end(), [&](const auto& kv) { return kv.first == name; });
            if (it != kwargs.end()) {
              call->variables[name] = it->second;
              kwargs.erase(it);
            } else {
              call->variables[name] = default_value ? eval(*default_value, call)
                                                    : Value::undefined("'" + name + "' is undefined");
            }
          }
          if (!kwargs.empty())
            throw RuntimeError("macro '" + macro->text + "' takes no keyword argument '" +
                               kwargs.front().first + "'");
          std::string out;
          exec_checked(macro->bodies[0], call, out, macro->line);
          return Value::from_string(out);
        });
  }

  // ---- expressions ----

  Value eval(const Expr& e, const ScopePtr& scope) {
    try {
      return eval_inner(e, scope);
    } catch (const RuntimeError& err) {
      fail(e.line, err.what());
    }
  }

  void eval_arguments(const Expr& e, size_t first, const ScopePtr& scope, std::vector<Value>& args,
                      Kwargs& kwargs) {
    size_t keywords = e.keyword_names.size();
    size_t positional_end = e.children.size() - keywords;
    for (size_t i = first; i < positional_end; ++i) args.push_back(eval(*e.children[i], scope));
    for (size_t k = 0; k < keywords; ++k)
      kwargs.emplace_back(e.keyword_names[k], eval(*e.children[positional_end + k], scope));
  }

  Value apply_filter_node(const Expr& filter, const Value& operand, const ScopePtr& scope) {
    std::vector<Value> args;
    Kwargs kwargs;
    eval_arguments(filter, 1, scope, args, kwargs);
    try {
      return apply_filter(filter.name, operand, args, kwargs);
    } catch (const RuntimeError& err) {
      fail(filter.line, "filter '" + filter.name + "': " + err.what());
    }
  }

  Value eval_inner(const Expr& e, const ScopePtr& scope) {
    using K = Expr::Kind;
    switch (e.kind) {
      case K::kLiteral:
        return e.literal;
      case K::kName: {
        const Value* v = scope->lookup(e.name);
        return v ? *v : Value::undefined("'" + e.name + "' is undefined");
      }
      case K::kGetAttr:
        return get_attribute(eval(*e.children[0], scope), e.name);
      case K::kGetItem:
        return get_item(eval(*e.children[0], scope), eval(*e.children[1], scope));
      case K::kSlice: {
        auto part = [&](size_t i) { return e.children[i] ? eval(*e.children[i], scope) : Value::none(); };
        return slice(eval(*e.children[0], scope), part(1), part(2), part(3));
      }
      case K::kCall: {
        Value callee = eval(*e.children[0], scope);
        std::vector<Value> args;
        Kwargs kwargs;
        eval_arguments(e, 1, scope, args, kwargs);
        return call_function(callee, args, kwargs);
      }
      case K::kFilter:
        return apply_filter_node(e, eval(*e.children[0], scope), scope);
      case K::kTest: {
        Value operand = eval(*e.children[0], scope);
        std::vector<Value> args;
        Kwargs kwargs;
        eval_arguments(e, 1, scope, args, kwargs);
        if (!kwargs.empty()) throw RuntimeError("test '" + e.name + "' takes no keyword arguments");
        return Value::from_bool(apply_test(e.name, operand, args) != e.negated);
      }
      case K::kUnary: {
        Value v = eval(*e.children[0], scope);
        int sign = e.name == "-" ? -1 : 1;
        if (v.kind == Value::Kind::kInt) return Value::from_int(sign * v.integer);
        if (v.kind == Value::Kind::kBool) return Value::from_int(sign * static_cast<int64_t>(v.boolean));
        if (v.kind == Value::Kind::kFloat) return Value::from_float(sign * v.number);
        throw RuntimeError("bad operand type for unary " + e.name + ": '" + v.type_name() + "'");
      }
      case K::kBinary:
        return binary(e.name, eval(*e.children[0], scope), eval(*e.children[1], scope));
      case K::kAnd: {
        Value left = eval(*e.children[0], scope);
        return left.truthy() ? eval(*e.children[1], scope) : left;
      }
      case K::kOr: {
        Value left = eval(*e.children[0], scope);
        return left.truthy() ? left : eval(*e.children[1], scope);
      }
      case K::kNot:
        return Value::from_bool(!eval(*e.children[0], scope).truthy());
      case K::kCompare: {
        Value left = eval(*e.children[0], scope);
        for (size_t i = 0; i < e.compare_ops.size(); ++i) {
          Value right = eval(*e.children[i + 1], scope);
          if (!compare(e.compare_ops[i], left, right)) return Value::from_bool(false);
          left = std::move(right);
        }
        return Value::from_bool(true);
      }
      case K::kCondExpr:
        if (eval(*e.children[0], scope).truthy()) return eval(*e.children[1], scope);
        return e.children[2] ? eval(*e.children[2], scope) : Value::undefined("the false branch of 'x if y'");
      case K::kList:
      case K::kTuple: {
        Array items;
        for (const auto& child : e.children) items.push_back(eval(*child, scope));
        return Value::from_array(std::move(items), e.kind == K::kTuple);
      }
      case K::kDict: {
        Object o;
        for (size_t i = 0; i + 1 < e.children.size(); i += 2) {
          Value key = eval(*e.children[i], scope);
          if (!key.is_string()) throw RuntimeError("dict literal keys must be strings here");
          o.set(key.string, eval(*e.children[i + 1], scope));
        }
        return Value::from_object(std::move(o));
      }
    }
    throw RuntimeError("unknown expression");
  }

  static bool compare(const std::string& op, const Value& a, const Value& b) {
    if (op == "==") return python_equal(a, b);
    if (op == "!=") return !python_equal(a, b);
    if (op == "in" || op == "not in") {
      bool found;
      if (b.is_string()) {
        if (!a.is_string())
          throw RuntimeError(std::string("'in <string>' requires a string on the left, not ") +
                             a.type_name());
        found = b.string.find(a.string) != std::string::npos;
      } else if (b.is_object()) {
        found = a.is_string() && b.object->find(a.string) != nullptr;
      } else {
        found = false;
        for (const Value& item : iterate(b))
          if (python_equal(item, a)) found = true;
      }
      return found == (op == "in");
    }
    if (a.is_undefined() || b.is_undefined())
      throw RuntimeError((a.is_undefined() ? a.string : b.string) + " (compared with " + op + ")");
    int c = python_compare(a, b);
    if (op == "<") return c < 0;
    if (op == ">") return c > 0;
    if (op == "<=") return c <= 0;
    return c >= 0;
  }

  static Value binary(const std::string& op, const Value& a, const Value& b) {
    if (op == "~") return Value::from_string(to_python_str(a) + to_python_str(b));
    if (a.is_undefined() || b.is_undefined())
      throw RuntimeError((a.is_undefined() ? a.string : b.string) + " (used with '" + op + "')");
    using K = Value::Kind;
    auto is_num = [](const Value& v) {
      return v.kind == K::kInt || v.kind == K::kFloat || v.kind == K::kBool;
    };
    auto as_int = [](const Value& v) {
      return v.kind == K::kBool ? static_cast<int64_t>(v.boolean) : v.integer;
    };
    auto as_double = [&](const Value& v) {
      return v.kind == K::kFloat ? v.number : static_cast<double>(as_int(v));
    };
    if (is_num(a) && is_num(b)) {
      bool ints = a.kind != K::kFloat && b.kind != K::kFloat;
      int64_t x = as_int(a), y = as_int(b);
      double fx = as_double(a), fy = as_double(b);
      if (op == "+") return ints ? Value::from_int(x + y) : Value::from_float(fx + fy);
      if (op == "-") return ints ? Value::from_int(x - y) : Value::from_float(fx - fy);
      if (op == "*") return ints ? Value::from_int(x * y) : Value::from_float(fx * fy);
      if ((op == "/" || op == "//" || op == "%") && (ints ? y == 0 : fy == 0))
        throw RuntimeError("division by zero");
      if (op == "/") return Value::from_float(fx / fy);
      if (op == "//") {
        if (!ints) return Value::from_float(std::floor(fx / fy));
        int64_t q = x / y;
        if ((x % y != 0) && ((x < 0) != (y < 0))) --q;
        return Value::from_int(q);
      }
      if (op == "%") {
        if (!ints) {
          double r = std::fmod(fx, fy);
          if (r != 0 && ((r < 0) != (fy < 0))) r += fy;
          return Value::from_float(r);
        }
        int64_t r = x % y;
        if (r != 0 && ((r < 0) != (y < 0))) r += y;
        return Value::from_int(r);
      }
      if (op == "**") {
        if (ints && y >= 0) {
          int64_t r = 1;
          for (int64_t i = 0; i < y; ++i) r *= x;
          return Value::from_int(r);
        }
        return Value::from_float(std::pow(fx, fy));
      }
    }
    if (op == "+" && a.is_string() && b.is_string()) return Value::from_string(a.string + b.string);
    if (op == "+" && a.is_array() && b.is_array()) {
      Array out = *a.array;
      out.insert(out.end(), b.array->begin(), b.array->end());
      return Value::from_array(std::move(out), a.is_tuple);
    }
    if (op == "*" && (a.is_string() || a.is_array() || b.is_string() || b.is_array())) {
      const Value& seq = a.is_string() || a.is_array() ? a : b;
      const Value& count = &seq == &a ? b : a;
      if (count.kind == K::kInt || count.kind == K::kBool) {
        int64_t times = std::max<int64_t>(0, as_int(count));
        if (seq.is_string()) {
          std::string out;
          for (int64_t i = 0; i < times; ++i) out += seq.string;
          return Value::from_string(out);
        }
        Array out;
        for (int64_t i = 0; i < times; ++i) out.insert(out.end(), seq.array->begin(), seq.array->end());
        return Value::from_array(std::move(out), seq.is_tuple);
      }
    }
    if (op == "%" && a.is_string())
      throw RuntimeError("unsupported construct: printf-style '%' string formatting");
    throw RuntimeError("unsupported operand type(s) for " + op + ": '" + a.type_name() + "' and '" +
                       b.type_name() + "'");
  }

  static constexpr int kMaxMacroDepth = 100;
  const RenderContext& context_;
  int macro_depth_ = 0;
};

}  // namespace

std::string render(const Template& tmpl, const RenderContext& context) {
  try {
    return Interpreter(context).run(tmpl);
  } catch (const RaisedException& raised) {
    throw Error(raised.what());
  }
}

}  // namespace swiftkv::tokenizer::jinja
