#pragma once
// Errors the HTTP API answers with, in OpenAI's shape:
//   {"error": {"message": ..., "type": "invalid_request_error", "param": "max_tokens", "code": 400}}
#include <nlohmann/json.hpp>
#include <string>

#include "common/error.h"

namespace swiftkv::server {

// Keys keep the order they are written in (responses read like OpenAI's), and requests keep the
// order the client sent (chat templates' tojson shows it).
using Json = nlohmann::ordered_json;

class ApiError : public Error {
 public:
  ApiError(int status, std::string type, const std::string& message, std::string param = "")
      : Error(message), status_(status), type_(std::move(type)), param_(std::move(param)) {}
  int status() const { return status_; }
  const std::string& type() const { return type_; }
  const std::string& param() const { return param_; }  // the request field at fault, "" when none

 private:
  int status_;
  std::string type_;
  std::string param_;
};

// 400 naming the field at fault.
inline ApiError bad_request(const std::string& message, const std::string& param = "") {
  return ApiError(400, "invalid_request_error", message, param);
}

Json error_json(const ApiError& error);

// JSON text for the wire: bytes that are not valid UTF-8 (a model can emit them, a tokenizer
// piece can hold them) become U+FFFD instead of making the dump throw.
std::string to_wire(const Json& json);

}  // namespace swiftkv::server
