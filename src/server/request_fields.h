#pragma once
// Typed access to the fields of a JSON request body. A field that is absent or null is "not
// given" (clients send null for unset options); a field of the wrong type or out of range is a
// 400 naming it. Unknown fields are ignored, as vLLM does.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "server/api_error.h"

namespace swiftkv::server {

// Parses a request body: malformed JSON (including invalid UTF-8 in strings) or anything but
// an object, or nesting deeper than 64 levels, is a 400.
Json parse_request_body(const std::string& body);

class RequestFields {
 public:
  explicit RequestFields(const Json& body) : body_(body) {}

  // The field's value, or null when absent or null.
  const Json* find(const std::string& name) const;
  bool has(const std::string& name) const { return find(name) != nullptr; }

  std::optional<double> number(const std::string& name, double min, double max) const;
  // Integers (or floats with an integral value, as pydantic accepts) in [min, max].
  std::optional<int64_t> integer(const std::string& name, int64_t min, int64_t max) const;
  std::optional<bool> boolean(const std::string& name) const;
  std::optional<std::string> string(const std::string& name) const;
  // A string or a list of strings ("stop").
  std::vector<std::string> strings(const std::string& name) const;
  // An object (stream_options, chat_template_kwargs); null when not given.
  const Json* object(const std::string& name) const;

  // 400 "`name` must be <expected>".
  [[noreturn]] static void wrong(const std::string& name, const std::string& expected);

 private:
  const Json& body_;
};

// The same rules for a value outside a request body (list elements, nested objects).
int64_t integer_value(const Json& value, const std::string& name, int64_t min, int64_t max);

}  // namespace swiftkv::server
