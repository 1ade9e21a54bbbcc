// Recursive-descent parser for the Jinja subset, with jinja2's grammar and precedence
// (jinja2/parser.py): condexpr < or < and < not < compare/in < + - < ~ < * / // % < ** <
// unary - + < postfix (. [] ()) < filters and tests. Filters and tests are checked against
// the implemented set here, like jinja2 does at compile time, so an unsupported one is a
// parse error naming it and its line.
#include <map>
#include <set>

#include "common/error.h"
#include "tokenizer/jinja.h"

namespace swiftkv::tokenizer::jinja {
namespace {

const std::set<std::string>& known_filters() {
  static const std::set<std::string> names = {
      "abs",  "capitalize", "count",      "d",       "default", "dictsort", "first",  "float",  "indent",
      "int",  "items",      "join",       "last",    "length",  "list",     "lower",  "map",    "max",
      "min",  "reject",     "rejectattr", "replace", "reverse", "round",    "safe",   "select", "selectattr",
      "sort", "string",     "sum",        "title",   "tojson",  "trim",     "unique", "upper"};
  return names;
}

const std::set<std::string>& known_tests() {
  static const std::set<std::string> names = {
      "boolean", "callable", "defined",  "divisibleby", "eq",   "equalto",   "even",
      "false",   "float",    "ge",       "gt",          "in",   "integer",   "iterable",
      "le",      "lower",    "lt",       "mapping",     "ne",   "none",      "number",
      "odd",     "sameas",   "sequence", "string",      "true", "undefined", "upper"};
  return names;
}

[[noreturn]] void fail(int line, const std::string& message) {
  throw Error("chat template line " + std::to_string(line) + ": " + message);
}

ExprPtr make(Expr::Kind kind, int line) {
  auto e = std::make_unique<Expr>();
  e->kind = kind;
  e->line = line;
  return e;
}

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  Body parse_template() {
    Body body = parse_body({});
    if (peek().type != Token::Type::kEnd) fail(peek().line, "unexpected tag");
    return body;
  }

 private:
  const Token& peek(size_t ahead = 0) const { return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)]; }
  const Token& next() { return tokens_[pos_ < tokens_.size() - 1 ? pos_++ : pos_]; }
  bool is_op(const char* op, size_t ahead = 0) const {
    return peek(ahead).type == Token::Type::kOp && peek(ahead).text == op;
  }
  bool is_name(const char* name, size_t ahead = 0) const {
    return peek(ahead).type == Token::Type::kName && peek(ahead).text == name;
  }
  bool skip_op(const char* op) {
    if (!is_op(op)) return false;
    ++pos_;
    return true;
  }
  bool skip_name(const char* name) {
    if (!is_name(name)) return false;
    ++pos_;
    return true;
  }
  static std::string describe(const Token& t) {
    switch (t.type) {
      case Token::Type::kEnd:
        return "the end of the template";
      case Token::Type::kBlockEnd:
        return "'%}'";
      case Token::Type::kVarEnd:
        return "'}}'";
      case Token::Type::kText:
        return "template text";
      default:
        return "'" + t.text + "'";
    }
  }
  void expect_op(const char* op) {
    if (!skip_op(op)) fail(peek().line, std::string("expected '") + op + "', got " + describe(peek()));
  }
  std::string expect_name() {
    if (peek().type != Token::Type::kName) fail(peek().line, "expected a name, got " + describe(peek()));
    return next().text;
  }
  void expect_block_end() {
    if (peek().type != Token::Type::kBlockEnd) fail(peek().line, "expected '%}', got " + describe(peek()));
    ++pos_;
  }

  // Statements until a {% name %} in `end_names` (left unconsumed: the caller checks it).
  Body parse_body(const std::set<std::string>& end_names) {
    Body body;
    while (true) {
      const Token& t = peek();
      if (t.type == Token::Type::kEnd) {
        if (!end_names.empty()) {
          std::string closing = *end_names.begin();
          for (const auto& n : end_names)
            if (n.rfind("end", 0) == 0) closing = n;
          fail(t.line, "missing {% " + closing + " %} (template ended)");
        }
        return body;
      }
      if (t.type == Token::Type::kText) {
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::kText;
        s->line = t.line;
        s->text = t.text;
        body.push_back(std::move(s));
        ++pos_;
      } else if (t.type == Token::Type::kVarBegin) {
        ++pos_;
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::kOutput;
        s->line = t.line;
        s->expr = parse_tuple_or_expression();
        if (peek().type != Token::Type::kVarEnd) fail(peek().line, "expected '}}', got " + describe(peek()));
        ++pos_;
        body.push_back(std::move(s));
      } else if (t.type == Token::Type::kBlockBegin) {
        const Token& name = peek(1);
        if (name.type == Token::Type::kName && end_names.count(name.text)) return body;
        ++pos_;
        if (auto s = parse_statement()) body.push_back(std::move(s));
      } else {
        fail(t.line, "unexpected " + describe(t));
      }
    }
  }

  // After a body: consume {% name %} that must be there.
  void expect_end_tag(const char* name) {
    ++pos_;  // {%
    if (!skip_name(name)) fail(peek().line, std::string("expected {% ") + name + " %}");
    expect_block_end();
  }

  std::unique_ptr<Stmt> parse_statement() {
    const Token& t = peek();
    int line = t.line;
    if (t.type != Token::Type::kName) fail(line, "expected a statement name after '{%', got " + describe(t));
    std::string name = next().text;
    auto s = std::make_unique<Stmt>();
    s->line = line;
    if (name == "if") {
      s->kind = Stmt::Kind::kIf;
      s->conditions.push_back(parse_tuple_or_expression());
      expect_block_end();
      while (true) {
        s->bodies.push_back(parse_body({"elif", "else", "endif"}));
        ++pos_;  // {%
        std::string tag = next().text;
        if (tag == "elif") {
          s->conditions.push_back(parse_tuple_or_expression());
          expect_block_end();
        } else if (tag == "else") {
          expect_block_end();
          s->bodies.push_back(parse_body({"endif"}));
          expect_end_tag("endif");
          break;
        } else {
          expect_block_end();
          break;
        }
      }
    } else if (name == "for") {
      s->kind = Stmt::Kind::kFor;
      s->targets = parse_targets();
      if (!skip_name("in")) fail(peek().line, "expected 'in' in a for loop, got " + describe(peek()));
      s->expr = parse_tuple_or_expression(/*with_condexpr=*/false);
      if (skip_name("if")) s->loop_filter = parse_expression();
      if (is_name("recursive")) fail(peek().line, "unsupported construct: recursive for loops");
      expect_block_end();
      s->bodies.push_back(parse_body({"endfor", "else"}));
      if (is_name("else", 1)) {
        pos_ += 2;
        expect_block_end();
        s->bodies.push_back(parse_body({"endfor"}));
      }
      expect_end_tag("endfor");
    } else if (name == "set") {
      std::string target = expect_name();
      if (skip_op(".")) {
        s->kind = Stmt::Kind::kSet;
        s->targets = {target};
        s->attribute = expect_name();
      } else {
        s->targets = {target};
        while (skip_op(",")) s->targets.push_back(expect_name());
      }
      if (skip_op("=")) {
        s->kind = Stmt::Kind::kSet;
        s->expr = parse_tuple_or_expression();
        expect_block_end();
      } else {
        if (!s->attribute.empty() || s->targets.size() != 1)
          fail(line, "a block {% set %} assigns exactly one plain name");
        if (is_op("|")) fail(peek().line, "unsupported construct: filters on a block {% set %}");
        s->kind = Stmt::Kind::kSetBlock;
        expect_block_end();
        s->bodies.push_back(parse_body({"endset"}));
        expect_end_tag("endset");
      }
    } else if (name == "macro") {
      s->kind = Stmt::Kind::kMacro;
      s->text = expect_name();
      expect_op("(");
      while (!skip_op(")")) {
        if (!s->parameters.empty()) expect_op(",");
        if (skip_op(")")) break;
        std::string parameter = expect_name();
        ExprPtr default_value;
        if (skip_op("=")) default_value = parse_expression();
        s->parameters.emplace_back(parameter, std::move(default_value));
      }
      expect_block_end();
      s->bodies.push_back(parse_body({"endmacro"}));
      expect_end_tag("endmacro");
    } else if (name == "break" || name == "continue") {
      s->kind = name == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue;
      expect_block_end();
    } else if (name == "filter") {
      s->kind = Stmt::Kind::kFilterBlock;
      s->expr = parse_filter(nullptr);
      expect_block_end();
      s->bodies.push_back(parse_body({"endfilter"}));
      expect_end_tag("endfilter");
    } else if (name == "with") {
      s->kind = Stmt::Kind::kWith;
      while (peek().type != Token::Type::kBlockEnd) {
        if (!s->parameters.empty()) expect_op(",");
        std::string target = expect_name();
        expect_op("=");
        s->parameters.emplace_back(target, parse_expression());
      }
      expect_block_end();
      s->bodies.push_back(parse_body({"endwith"}));
      expect_end_tag("endwith");
    } else if (name == "generation") {
      // transformers' {% generation %} marks assistant text for masks; it renders its body.
      expect_block_end();
      Body body = parse_body({"endgeneration"});
      expect_end_tag("endgeneration");
      s->kind = Stmt::Kind::kWith;
      s->bodies.push_back(std::move(body));
    } else if (name.rfind("end", 0) == 0 || name == "else" || name == "elif") {
      fail(line, "unexpected {% " + name + " %} (no open block it closes)");
    } else {
      fail(line, "unsupported statement {% " + name + " %}");
    }
    return s;
  }

  std::vector<std::string> parse_targets() {
    std::vector<std::string> names;
    bool paren = skip_op("(");
    do {
      names.push_back(expect_name());
    } while (skip_op(","));
    if (paren) expect_op(")");
    return names;
  }

  // expr or a, b, c (an implicit tuple), as in {{ }}, set values and for iterables.
  ExprPtr parse_tuple_or_expression(bool with_condexpr = true) {
    int line = peek().line;
    ExprPtr first = with_condexpr ? parse_expression() : parse_or();
    if (!is_op(",")) return first;
    auto tuple = make(Expr::Kind::kTuple, line);
    tuple->children.push_back(std::move(first));
    while (skip_op(",")) {
      if (peek().type == Token::Type::kBlockEnd || peek().type == Token::Type::kVarEnd) break;
      tuple->children.push_back(with_condexpr ? parse_expression() : parse_or());
    }
    return tuple;
  }

  ExprPtr parse_expression() {
    ExprPtr expr = parse_or();
    while (is_name("if")) {
      int line = next().line;
      auto cond = make(Expr::Kind::kCondExpr, line);
      ExprPtr test = parse_or();
      ExprPtr otherwise = skip_name("else") ? parse_expression() : nullptr;
      cond->children.push_back(std::move(test));
      cond->children.push_back(std::move(expr));
      cond->children.push_back(std::move(otherwise));
      expr = std::move(cond);
    }
    return expr;
  }

  ExprPtr binary(Expr::Kind kind, std::string op, ExprPtr left, ExprPtr right, int line) {
    auto e = make(kind, line);
    e->name = std::move(op);
    e->children.push_back(std::move(left));
    e->children.push_back(std::move(right));
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    while (is_name("or")) {
      int line = next().line;
      left = binary(Expr::Kind::kOr, "or", std::move(left), parse_and(), line);
    }
    return left;
  }

  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    while (is_name("and")) {
      int line = next().line;
      left = binary(Expr::Kind::kAnd, "and", std::move(left), parse_not(), line);
    }
    return left;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      auto e = make(Expr::Kind::kNot, next().line);
      e->children.push_back(parse_not());
      return e;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    int line = peek().line;
    ExprPtr left = parse_math1();
    ExprPtr compare;
    while (true) {
      std::string op;
      if (peek().type == Token::Type::kOp &&
          (peek().text == "==" || peek().text == "!=" || peek().text == "<" || peek().text == ">" ||
           peek().text == "<=" || peek().text == ">=")) {
        op = next().text;
      } else if (is_name("in")) {
        ++pos_;
        op = "in";
      } else if (is_name("not") && is_name("in", 1)) {
        pos_ += 2;
        op = "not in";
      } else {
        break;
      }
      if (!compare) {
        compare = make(Expr::Kind::kCompare, line);
        compare->children.push_back(std::move(left));
      }
      compare->compare_ops.push_back(op);
      compare->children.push_back(parse_math1());
    }
    return compare ? std::move(compare) : std::move(left);
  }

  ExprPtr parse_math1() {
    ExprPtr left = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token& op = next();
      left = binary(Expr::Kind::kBinary, op.text, std::move(left), parse_concat(), op.line);
    }
    return left;
  }

  ExprPtr parse_concat() {
    ExprPtr left = parse_math2();
    while (is_op("~")) {
      int line = next().line;
      left = binary(Expr::Kind::kBinary, "~", std::move(left), parse_math2(), line);
    }
    return left;
  }

  ExprPtr parse_math2() {
    ExprPtr left = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token& op = next();
      left = binary(Expr::Kind::kBinary, op.text, std::move(left), parse_pow(), op.line);
    }
    return left;
  }

  ExprPtr parse_pow() {
    ExprPtr left = parse_unary(true);
    while (is_op("**")) {
      int line = next().line;
      left = binary(Expr::Kind::kBinary, "**", std::move(left), parse_unary(true), line);
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    ExprPtr node;
    if (is_op("-") || is_op("+")) {
      const Token& op = next();
      node = make(Expr::Kind::kUnary, op.line);
      node->name = op.text;
      node->children.push_back(parse_unary(false));
    } else {
      node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_and_test(std::move(node));
    return node;
  }

  ExprPtr parse_primary() {
    const Token& t = next();
    switch (t.type) {
      case Token::Type::kName: {
        auto e = make(Expr::Kind::kLiteral, t.line);
        if (t.text == "true" || t.text == "True") {
          e->literal = Value::from_bool(true);
        } else if (t.text == "false" || t.text == "False") {
          e->literal = Value::from_bool(false);
        } else if (t.text == "none" || t.text == "None") {
          e->literal = Value::none();
        } else {
          e->kind = Expr::Kind::kName;
          e->name = t.text;
        }
        return e;
      }
      case Token::Type::kString: {
        auto e = make(Expr::Kind::kLiteral, t.line);
        std::string value = t.text;
        while (peek().type == Token::Type::kString) value += next().text;
        e->literal = Value::from_string(value);
        return e;
      }
      case Token::Type::kInt: {
        auto e = make(Expr::Kind::kLiteral, t.line);
        try {
          e->literal = Value::from_int(std::stoll(t.text));
        } catch (const std::exception&) {
          fail(t.line, "integer literal " + t.text + " is out of range");
        }
        return e;
      }
      case Token::Type::kFloat: {
        auto e = make(Expr::Kind::kLiteral, t.line);
        e->literal = Value::from_float(std::stod(t.text));
        return e;
      }
      case Token::Type::kOp:
        if (t.text == "(") return parse_parenthesized(t.line);
        if (t.text == "[") {
          auto e = make(Expr::Kind::kList, t.line);
          while (!skip_op("]")) {
            if (!e->children.empty()) expect_op(",");
            if (skip_op("]")) break;
            e->children.push_back(parse_expression());
          }
          return e;
        }
        if (t.text == "{") {
          auto e = make(Expr::Kind::kDict, t.line);
          while (!skip_op("}")) {
            if (!e->children.empty()) expect_op(",");
            if (skip_op("}")) break;
            e->children.push_back(parse_expression());
            expect_op(":");
            e->children.push_back(parse_expression());
          }
          return e;
        }
        break;
      default:
        break;
    }
    fail(t.line, "unexpected " + describe(t) + " in an expression");
  }

  ExprPtr parse_parenthesized(int line) {
    if (skip_op(")")) return make(Expr::Kind::kTuple, line);
    ExprPtr first = parse_expression();
    if (skip_op(")")) return first;
    auto tuple = make(Expr::Kind::kTuple, line);
    tuple->children.push_back(std::move(first));
    while (!skip_op(")")) {
      expect_op(",");
      if (skip_op(")")) break;
      tuple->children.push_back(parse_expression());
    }
    return tuple;
  }

  ExprPtr parse_postfix(ExprPtr node) {
    while (true) {
      if (is_op(".")) {
        int line = next().line;
        if (peek().type == Token::Type::kName) {
          auto e = make(Expr::Kind::kGetAttr, line);
          e->name = next().text;
          e->children.push_back(std::move(node));
          node = std::move(e);
        } else if (peek().type == Token::Type::kInt) {
          auto e = make(Expr::Kind::kGetItem, line);
          e->children.push_back(std::move(node));
          auto index = make(Expr::Kind::kLiteral, line);
          index->literal = Value::from_int(std::stoll(next().text));
          e->children.push_back(std::move(index));
          node = std::move(e);
        } else {
          fail(line, "expected an attribute name after '.', got " + describe(peek()));
        }
      } else if (is_op("[")) {
        node = parse_subscript(std::move(node));
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr object) {
    int line = next().line;  // [
    ExprPtr parts[3];
    int colons = 0;
    while (!is_op("]")) {
      if (skip_op(":")) {
        if (++colons > 2) fail(line, "a slice takes at most start:stop:step");
        continue;
      }
      if (parts[colons]) fail(line, "unsupported construct: a tuple or multiple values as a subscript");
      parts[colons] = parse_expression();
    }
    ++pos_;  // ]
    if (colons == 0) {
      if (!parts[0]) fail(line, "empty subscript []");
      auto e = make(Expr::Kind::kGetItem, line);
      e->children.push_back(std::move(object));
      e->children.push_back(std::move(parts[0]));
      return e;
    }
    auto e = make(Expr::Kind::kSlice, line);
    e->children.push_back(std::move(object));
    for (auto& part : parts) e->children.push_back(std::move(part));
    return e;
  }

  // (positional..., name=value...) into node->children (after any already there) and
  // node->keyword_names for the trailing keyword arguments.
  void parse_arguments(Expr& node) {
    expect_op("(");
    bool first = true;
    while (!skip_op(")")) {
      if (!first) expect_op(",");
      first = false;
      if (skip_op(")")) break;
      if (is_op("*") || is_op("**")) fail(peek().line, "unsupported construct: *args / **kwargs in a call");
      if (peek().type == Token::Type::kName && is_op("=", 1)) {
        node.keyword_names.push_back(next().text);
        ++pos_;
        node.children.push_back(parse_expression());
      } else {
        if (!node.keyword_names.empty()) fail(peek().line, "positional argument after a keyword argument");
        node.children.push_back(parse_expression());
      }
    }
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto e = make(Expr::Kind::kCall, peek().line);
    e->children.push_back(std::move(callee));
    parse_arguments(*e);
    return e;
  }

  // `operand | name(args)`; operand nullptr for {% filter %} blocks.
  ExprPtr parse_filter(ExprPtr operand) {
    int line = peek().line;
    std::string name = expect_name();
    if (!known_filters().count(name)) fail(line, "unsupported filter '" + name + "'");
    auto e = make(Expr::Kind::kFilter, line);
    e->name = name;
    e->children.push_back(std::move(operand));
    if (is_op("(")) parse_arguments(*e);
    return e;
  }

  ExprPtr parse_filter_and_test(ExprPtr node) {
    while (true) {
      if (skip_op("|")) {
        node = parse_filter(std::move(node));
      } else if (is_name("is")) {
        int line = next().line;
        auto e = make(Expr::Kind::kTest, line);
        e->negated = skip_name("not");
        std::string name;
        if (peek().type == Token::Type::kName) {
          name = next().text;
        } else if (peek().type == Token::Type::kOp &&
                   (peek().text == "==" || peek().text == "!=" || peek().text == "<" || peek().text == ">" ||
                    peek().text == "<=" || peek().text == ">=")) {
          name = next().text;  // `is ==` etc.: the operator tests
        } else {
          fail(line, "expected a test name after 'is', got " + describe(peek()));
        }
        static const std::map<std::string, std::string> kOperatorTests = {
            {"==", "eq"}, {"!=", "ne"}, {"<", "lt"}, {">", "gt"}, {"<=", "le"}, {">=", "ge"}};
        if (auto it = kOperatorTests.find(name); it != kOperatorTests.end()) name = it->second;
        if (!known_tests().count(name)) fail(line, "unsupported test '" + name + "'");
        e->name = name;
        e->children.push_back(std::move(node));
        if (is_op("(")) {
          parse_arguments(*e);
        } else {
          // One argument without parentheses: `x is divisibleby 3`, `x is sameas none`.
          const Token& t = peek();
          bool starts_primary =
              (t.type == Token::Type::kName && t.text != "else" && t.text != "or" && t.text != "and" &&
               t.text != "if" && t.text != "in" && t.text != "not" && t.text != "is") ||
              t.type == Token::Type::kString || t.type == Token::Type::kInt ||
              t.type == Token::Type::kFloat ||
              (t.type == Token::Type::kOp && (t.text == "(" || t.text == "[" || t.text == "{"));
          if (starts_primary) e->children.push_back(parse_postfix(parse_primary()));
        }
        node = std::move(e);
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
};

}  // namespace

std::shared_ptr<const Template> parse(const std::string& source) {
  auto tmpl = std::make_shared<Template>();
  tmpl->body = Parser(tokenize(source)).parse_template();
  return tmpl;
}

}  // namespace swiftkv::tokenizer::jinja
