#include "server/http_server.h"

#include <httplib.h>

#include <chrono>

#include "server/completion_service.h"
#include "server/metrics.h"
#include "server/request_fields.h"
#include "server/tokenize_api.h"

namespace swiftkv::server {

namespace {

// Threads beyond the engine's capacity: /health, /metrics, /tokenize, refusals, idle keep-alive
// connections (each holds a thread until it times out).
constexpr size_t kSpareThreads = 16;
constexpr size_t kMaxBodyBytes = size_t{64} << 20;

void send_json(httplib::Response& response, const Json& json, int status = 200) {
  response.status = status;
  response.set_content(to_wire(json), "application/json");
}

void send_error(httplib::Response& response, const ApiError& error) {
  send_json(response, error_json(error), error.status());
}

// Constant-time comparison, so response timing does not reveal how much of a key matched.
bool same_secret(const std::string& given, const std::string& expected) {
  unsigned char difference = given.size() != expected.size();
  for (size_t i = 0; i < given.size(); ++i)
    difference |= static_cast<unsigned char>(given[i] ^ expected[i % expected.size()]);
  return difference == 0;
}

// httplib refuses bodies over the payload limit, and form-encoded ones (curl -d sends that
// Content-Type) over a much smaller one of its own.
std::string too_large_message(const httplib::Request& request) {
  if (request.get_header_value("Content-Type").starts_with("application/x-www-form-urlencoded"))
    return "a form-encoded request body is limited to " +
           std::to_string(CPPHTTPLIB_FORM_URL_ENCODED_PAYLOAD_MAX_LENGTH) +
           " bytes: send the JSON with \"Content-Type: application/json\"";
  return "the request body is over " + std::to_string(kMaxBodyBytes) + " bytes";
}

}  // namespace

struct HttpServer::Impl {
  Impl(runtime::Engine& engine_, const ServedModel& model_, const ServerOptions& options_)
      : engine(engine_),
        model(model_),
        options(options_),
        metrics(model_.name),
        service(engine_, model_, metrics, engine_.options().max_num_seqs + options_.max_waiting_requests),
        created(std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count()) {}

  using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;

  // Every route answers failures as OpenAI-style JSON and keeps the server running.
  Handler guarded(Handler handler) {
    return [handler = std::move(handler)](const httplib::Request& request, httplib::Response& response) {
      try {
        handler(request, response);
      } catch (const ApiError& error) {
        send_error(response, error);
      } catch (const Error& error) {  // a message for the user from a lower layer
        send_error(response, bad_request(error.what()));
      } catch (const std::exception& error) {
        send_error(response, ApiError(500, "internal_server_error", error.what()));
      }
    };
  }

  bool authorized(const httplib::Request& request) const {
    if (options.api_key.empty() || !request.path.starts_with("/v1/")) return true;
    return same_secret(request.get_header_value("Authorization"), "Bearer " + options.api_key);
  }

  Json models_json() const {
    Json card = {{"id", model.name},
                 {"object", "model"},
                 {"created", created},
                 {"owned_by", "swiftkv"},
                 {"root", options.model_root},
                 {"parent", nullptr},
                 {"max_model_len", model.max_model_len}};
    return {{"object", "list"}, {"data", Json::array({card})}};
  }

  void add_routes() {
    http.set_pre_routing_handler([this](const httplib::Request& request, httplib::Response& response) {
      if (authorized(request)) return httplib::Server::HandlerResponse::Unhandled;
      response.set_header("WWW-Authenticate", "Bearer");
      send_error(response, ApiError(401, "authentication_error",
                                    "missing or wrong API key: send \"Authorization: Bearer <key>\""));
      return httplib::Server::HandlerResponse::Handled;
    });
    // Answers httplib's own refusals (no route, body too large) in the same JSON shape.
    http.set_error_handler(httplib::Server::HandlerWithResponse(
        [](const httplib::Request& request, httplib::Response& response) {
          if (!response.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
          std::string message = "HTTP error " + std::to_string(response.status);
          if (response.status == 404) message = "no route " + request.method + " " + request.path;
          if (response.status == 413) message = too_large_message(request);
          const char* type = response.status == 404 ? "not_found_error" : "invalid_request_error";
          send_error(response, ApiError(response.status, type, message));
          return httplib::Server::HandlerResponse::Handled;
        }));
    http.Get("/health", [](const httplib::Request&, httplib::Response& response) { response.status = 200; });
    http.Get("/v1/models", guarded([this](const httplib::Request&, httplib::Response& response) {
               send_json(response, models_json());
             }));
    http.Get("/metrics", guarded([this](const httplib::Request&, httplib::Response& response) {
               response.set_content(metrics.render(engine.stats()),
                                    "text/plain; version=0.0.4; charset=utf-8");
             }));
    http.Post("/v1/completions",
              guarded([this](const httplib::Request& request, httplib::Response& response) {
                service.serve(parse_completion_request(parse_request_body(request.body), model), response);
              }));
    http.Post("/v1/chat/completions",
              guarded([this](const httplib::Request& request, httplib::Response& response) {
                service.serve(parse_chat_request(parse_request_body(request.body), model), response);
              }));
    http.Post("/tokenize", guarded([this](const httplib::Request& request, httplib::Response& response) {
                send_json(response, tokenize_response(parse_request_body(request.body), model));
              }));
    http.Post("/detokenize", guarded([this](const httplib::Request& request, httplib::Response& response) {
                send_json(response, detokenize_response(parse_request_body(request.body), model));
              }));
  }

  runtime::Engine& engine;
  const ServedModel& model;
  ServerOptions options;
  Metrics metrics;
  CompletionService service;
  int64_t created;
  httplib::Server http;
};

HttpServer::HttpServer(runtime::Engine& engine, const ServedModel& model, const ServerOptions& options)
    : impl_(std::make_unique<Impl>(engine, model, options)) {
  if (options.max_waiting_requests < 0) throw Error("--max-waiting-requests must not be negative");
  const size_t threads = thread_count();
  impl_->http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  impl_->http.set_keep_alive_max_count(1000);
  impl_->http.set_keep_alive_timeout(5);
  impl_->http.set_payload_max_length(kMaxBodyBytes);
  impl_->add_routes();
}

HttpServer::~HttpServer() = default;

size_t HttpServer::thread_count() const {
  return static_cast<size_t>(impl_->service.capacity()) + kSpareThreads;
}

int HttpServer::bind() {
  const ServerOptions& options = impl_->options;
  if (options.port == 0) {
    const int port = impl_->http.bind_to_any_port(options.host);
    if (port > 0) return port;
  } else if (impl_->http.bind_to_port(options.host, options.port)) {
    return options.port;
  }
  throw Error("cannot listen on " + options.host + ":" + std::to_string(options.port) +
              " (address in use, or not an address of this machine?)");
}

void HttpServer::run() { impl_->http.listen_after_bind(); }

void HttpServer::stop() {
  impl_->service.shut_down();
  impl_->http.stop();
}

}  // namespace swiftkv::server
