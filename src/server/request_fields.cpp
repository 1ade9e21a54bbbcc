#include "server/request_fields.h"

#include <cmath>

namespace swiftkv::server {

namespace {

// Deeper bodies are refused while parsing: the request is copied and dumped recursively later
// (chat templates), and a body of a few hundred thousand nested arrays would overflow the stack.
constexpr int kMaxJsonDepth = 64;

}  // namespace

Json error_json(const ApiError& error) {
  Json param = error.param().empty() ? Json(nullptr) : Json(error.param());
  return {{"error",
           {{"message", error.what()}, {"type", error.type()}, {"param", param}, {"code", error.status()}}}};
}

std::string to_wire(const Json& json) { return json.dump(-1, ' ', false, Json::error_handler_t::replace); }

Json parse_request_body(const std::string& body) {
  Json json;
  try {
    json = Json::parse(body, [](int depth, Json::parse_event_t event, Json&) {
      const bool opens =
          event == Json::parse_event_t::object_start || event == Json::parse_event_t::array_start;
      if (opens && depth >= kMaxJsonDepth)
        throw bad_request("JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
      return true;
    });
  } catch (const Json::parse_error& error) {
    // nlohmann's message names the position and the problem (e.g. "ill-formed UTF-8 byte").
    throw bad_request(std::string("the request body is not valid JSON: ") + error.what());
  }
  if (!json.is_object()) throw bad_request("the request body must be a JSON object");
  return json;
}

void RequestFields::wrong(const std::string& name, const std::string& expected) {
  throw bad_request("`" + name + "` must be " + expected, name);
}

const Json* RequestFields::find(const std::string& name) const {
  auto it = body_.find(name);
  if (it == body_.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<double> RequestFields::number(const std::string& name, double min, double max) const {
  const Json* value = find(name);
  if (!value) return std::nullopt;
  const std::string range = "a number in [" + Json(min).dump() + ", " + Json(max).dump() + "]";
  if (!value->is_number()) wrong(name, range);
  double number = value->get<double>();
  if (!(number >= min && number <= max)) wrong(name, range);  // also refuses NaN
  return number;
}

int64_t integer_value(const Json& value, const std::string& name, int64_t min, int64_t max) {
  const std::string range = "an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
  if (!value.is_number()) RequestFields::wrong(name, range);
  if (value.is_number_unsigned()) {
    if (value.get<uint64_t>() > static_cast<uint64_t>(max)) RequestFields::wrong(name, range);
    return value.get<int64_t>();
  }
  if (value.is_number_integer()) {
    int64_t integer = value.get<int64_t>();
    if (integer < min || integer > max) RequestFields::wrong(name, range);
    return integer;
  }
  double number = value.get<double>();
  if (!(number >= static_cast<double>(min) && number <= static_cast<double>(max)) ||
      number != std::floor(number))
    RequestFields::wrong(name, range);
  return static_cast<int64_t>(number);
}

std::optional<int64_t> RequestFields::integer(const std::string& name, int64_t min, int64_t max) const {
  const Json* value = find(name);
  if (!value) return std::nullopt;
  return integer_value(*value, name, min, max);
}

std::optional<bool> RequestFields::boolean(const std::string& name) const {
  const Json* value = find(name);
  if (!value) return std::nullopt;
  if (!value->is_boolean()) wrong(name, "true or false");
  return value->get<bool>();
}

std::optional<std::string> RequestFields::string(const std::string& name) const {
  const Json* value = find(name);
  if (!value) return std::nullopt;
  if (!value->is_string()) wrong(name, "a string");
  return value->get<std::string>();
}

std::vector<std::string> RequestFields::strings(const std::string& name) const {
  const Json* value = find(name);
  if (!value) return {};
  if (value->is_string()) return {value->get<std::string>()};
  if (!value->is_array()) wrong(name, "a string or a list of strings");
  std::vector<std::string> strings;
  for (const Json& element : *value) {
    if (!element.is_string()) wrong(name, "a string or a list of strings");
    strings.push_back(element.get<std::string>());
  }
  return strings;
}

const Json* RequestFields::object(const std::string& name) const {
  const Json* value = find(name);
  if (value && !value->is_object()) wrong(name, "an object");
  return value;
}

}  // namespace swiftkv::server
