#pragma once
// The Jinja subset behind ChatTemplate: values, lexer tokens, AST, and the three stages
// (jinja_lexer.cpp -> jinja_parser.cpp -> jinja_eval.cpp). Internal to src/tokenizer.
//
// Semantics follow Python jinja2 as transformers configures it (ImmutableSandboxedEnvironment,
// trim_blocks, lstrip_blocks, loopcontrols, default Undefined), since that is what produced
// the prompts a model was trained on. Values are Python-like: int/float kept apart, str()
// of None is "None", of True "True", of a list its Python repr.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace swiftkv::tokenizer::jinja {

struct Value;
using Array = std::vector<Value>;
// Insertion-ordered like a Python dict; chat-template objects are small, so a linear scan.
struct Object {
  std::vector<std::pair<std::string, Value>> entries;
  const Value* find(const std::string& key) const;
  void set(const std::string& key, Value value);
};
// A callable: positional arguments, keyword arguments (in call order).
using Kwargs = std::vector<std::pair<std::string, Value>>;
using Function = std::function<Value(std::vector<Value>& args, Kwargs& kwargs)>;

struct Value {
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kArray, kObject, kNamespace, kFunction };
  Kind kind = Kind::kUndefined;
  bool boolean = false;
  bool is_tuple = false;  // an Array that Python would show as a tuple (items(), literals)
  int64_t integer = 0;
  double number = 0;
  std::string string;  // kString; for kUndefined the name that was looked up (messages)
  std::shared_ptr<Array> array;
  std::shared_ptr<Object> object;  // kObject and kNamespace (shared, so namespaces mutate)
  std::shared_ptr<Function> function;

  static Value undefined(std::string name = {});
  static Value none();
  static Value from_bool(bool b);
  static Value from_int(int64_t i);
  static Value from_float(double d);
  static Value from_string(std::string s);
  static Value from_array(Array a, bool tuple = false);
  static Value from_object(Object o);
  static Value namespace_of(Object o);
  static Value from_function(Function f);

  bool is_undefined() const { return kind == Kind::kUndefined; }
  bool is_none() const { return kind == Kind::kNone; }
  bool is_string() const { return kind == Kind::kString; }
  bool is_array() const { return kind == Kind::kArray; }
  bool is_object() const { return kind == Kind::kObject; }
  bool is_number() const { return kind == Kind::kInt || kind == Kind::kFloat; }
  bool truthy() const;
  const char* type_name() const;  // Python's name: 'str', 'list', 'dict', ...
};

// ---- lexer ---------------------------------------------------------------------------------
struct Token {
  enum class Type {
    kText,
    kBlockBegin,
    kBlockEnd,
    kVarBegin,
    kVarEnd,
    kName,
    kString,
    kInt,
    kFloat,
    kOp,
    kEnd
  };
  Type type;
  std::string text;  // text / name / string value / number spelling / operator
  int line;
};
// Applies transformers' whitespace settings (trim_blocks, lstrip_blocks, no trailing
// newline) and the -/+ markers; comments are dropped. Throws swiftkv::Error with the line.
std::vector<Token> tokenize(const std::string& source);

// ---- AST -----------------------------------------------------------------------------------
struct Expr;
using ExprPtr = std::unique_ptr<Expr>;
struct Expr {
  enum class Kind {
    kLiteral,
    kName,
    kGetAttr,
    kGetItem,
    kSlice,
    kCall,
    kFilter,
    kTest,
    kUnary,
    kBinary,
    kAnd,
    kOr,
    kNot,
    kCompare,
    kCondExpr,
    kList,
    kTuple,
    kDict
  };
  Kind kind;
  int line = 0;
  Value literal;                           // kLiteral
  std::string name;                        // kName, kGetAttr attribute, kFilter/kTest name, kUnary/kBinary op
  std::vector<ExprPtr> children;           // operands; kCall: callee first; kDict: key, value, key, ...
  std::vector<std::string> keyword_names;  // kCall/kFilter/kTest: names of the trailing kwargs
  std::vector<std::string> compare_ops;    // kCompare: ops between children
  bool negated = false;                    // kTest: "is not"
  // kSlice: children = object, start, stop, step (nullptr where omitted)
  // kCondExpr: children = test, then, else (else may be nullptr)
};

struct Stmt;
using Body = std::vector<std::unique_ptr<Stmt>>;
struct Stmt {
  enum class Kind {
    kText,
    kOutput,
    kIf,
    kFor,
    kSet,
    kSetBlock,
    kMacro,
    kBreak,
    kContinue,
    kFilterBlock,
    kWith
  };
  Kind kind;
  int line = 0;
  std::string text;  // kText
  ExprPtr expr;      // kOutput value, kFor iterable, kSet value
  std::vector<std::string>
      targets;            // kFor / kSet / kSetBlock names; kSet "ns.attr" as {ns, attr} with attribute
  std::string attribute;  // kSet: namespace attribute target (targets[0] is the namespace)
  // kIf: conditions[i] guards bodies[i]; a trailing extra body is the else.
  std::vector<ExprPtr> conditions;
  std::vector<Body> bodies;
  // kFor: bodies[0] loop, bodies[1] else; loop_filter the `if` clause.
  ExprPtr loop_filter;
  // kMacro: name in text, parameters and their defaults (nullptr = required).
  std::vector<std::pair<std::string, ExprPtr>> parameters;
  // kFilterBlock: expr is a kFilter node whose operand slot (children[0]) is empty.
  // kWith: parameters are the assignments, bodies[0] the body.
};

struct Template {
  Body body;
};
// Throws swiftkv::Error naming the unsupported construct and its line.
std::shared_ptr<const Template> parse(const std::string& source);

// ---- evaluation ----------------------------------------------------------------------------
struct RenderContext {
  Object globals;    // messages, add_generation_prompt, bos_token, ... (already converted)
  std::string date;  // "%d %b %Y"; empty = today
};
std::string render(const Template& tmpl, const RenderContext& context);

// ---- Python-compatible value helpers (jinja_value.cpp, jinja_builtins.cpp) -----------------
// Thrown by helpers that do not know the template line; the evaluator adds it.
struct RuntimeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// raise_exception(msg): reaches the caller as swiftkv::Error(msg), unwrapped.
struct RaisedException : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string to_python_str(const Value& value);   // str(x)
std::string to_python_repr(const Value& value);  // repr(x)
struct JsonOptions {
  int indent = -1;  // < 0: None
  bool ensure_ascii = false;
  std::string item_separator, key_separator;  // empty: json.dumps' defaults for the indent
  bool sort_keys = false;
};
std::string to_json(const Value& value, const JsonOptions& options);  // json.dumps
bool python_equal(const Value& a, const Value& b);
int python_compare(const Value& a, const Value& b);  // <0, 0, >0; RuntimeError if unorderable
std::vector<Value> iterate(const Value& value);      // for x in value
int64_t python_len(const Value& value);
Value get_attribute(const Value& object, const std::string& name);  // object.name (methods too)
Value get_item(const Value& object, const Value& key);              // object[key]
Value slice(const Value& object, const Value& start, const Value& stop, const Value& step);

// UTF-8 helpers: code points of s (invalid bytes map to U+FFFD-like single units).
std::vector<uint32_t> decode_utf8(const std::string& s);
std::string encode_utf8(const std::vector<uint32_t>& code_points, size_t from = 0, size_t to = SIZE_MAX);
bool is_python_space(uint32_t cp);

// Filters and tests by name (names checked by the parser); `call` runs macros / functions.
Value apply_filter(const std::string& name, const Value& operand, std::vector<Value>& args, Kwargs& kwargs);
bool apply_test(const std::string& name, const Value& operand, std::vector<Value>& args);
Value call_function(const Value& callee, std::vector<Value>& args, Kwargs& kwargs);

}  // namespace swiftkv::tokenizer::jinja
