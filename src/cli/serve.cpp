// swiftkv serve: the OpenAI-compatible HTTP server (src/server) over the continuous-batching engine.
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <optional>
#include <thread>

#include "cli/commands.h"
#include "common/byte_size.h"
#include "common/files.h"
#include "io/model_config.h"
#include "runtime/engine.h"
#include "server/http_server.h"

namespace swiftkv::cli {

namespace {

struct ServeOptions {
  ModelOptions model;
  server::ServerOptions server;
  std::string served_model_name;  // default: the -m argument, as vLLM names it
  std::string chat_template_path;
  std::string kv_cache_memory;
  runtime::EngineOptions engine;
};

// SIGINT / SIGTERM are blocked in every thread (threads inherit the mask, so block it first) and
// taken by one thread that stops the server: requests in flight end with finish_reason "abort".
class ShutdownOnSignal {
 public:
  ShutdownOnSignal() {
    sigemptyset(&signals_);
    sigaddset(&signals_, SIGINT);
    sigaddset(&signals_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
    signal(SIGPIPE, SIG_IGN);  // a client gone mid-response is a failed write, not a dead server
  }
  // Calls stop() after a signal, and again until served() (stop() may come before listening starts).
  void watch(const std::function<void()>& stop) {
    thread_ = std::thread([this, stop] {
      const timespec poll{0, 50'000'000};
      int signal = -1;
      while (!served_ && signal < 0) signal = sigtimedwait(&signals_, nullptr, &poll);
      if (signal < 0) return;
      std::fprintf(stderr, "swiftkv serve: %s, shutting down\n", strsignal(signal));
      while (!served_) {
        stop();
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    });
  }
  void served() {
    served_ = true;
    if (thread_.joinable()) thread_.join();
  }
  ~ShutdownOnSignal() { served(); }

 private:
  sigset_t signals_;
  std::atomic<bool> served_{false};
  std::thread thread_;
};

void run_serve(ServeOptions options) {
  ShutdownOnSignal shutdown;
  const model::Path path = selected_path(options.model);
  auto model = load_model(options.model, path == model::Path::Teacher, path == model::Path::SwiftKV);
  auto tokenizer = tokenizer::Tokenizer::from_dir(options.model.model_dir);
  const std::string template_source = options.chat_template_path.empty()
                                          ? tokenizer.chat_template()
                                          : read_text_file(options.chat_template_path);
  std::optional<tokenizer::ChatTemplate> chat_template;
  if (!template_source.empty()) chat_template.emplace(template_source);

  options.engine.path = path;
  options.engine.kv_dtype = selected_kv_dtype(options.model);
  if (!options.kv_cache_memory.empty())
    options.engine.kv_cache_bytes = parse_byte_size(options.kv_cache_memory, "--kv-cache-memory");
  runtime::Engine engine(*model, tokenizer, options.engine);
  if (engine.options().max_model_len < model->config().max_position_embeddings &&
      options.engine.max_model_len == 0)
    std::fprintf(
        stderr,
        "swiftkv serve: note: max_model_len is %lld, not the model's %lld: that is the longest request "
        "the KV cache (%lld bytes) holds; raise --kv-cache-memory for more\n",
        (long long)engine.options().max_model_len, (long long)model->config().max_position_embeddings,
        (long long)engine.options().kv_cache_bytes);

  server::ServedModel served;
  served.name = options.served_model_name.empty() ? options.model.model_dir : options.served_model_name;
  served.tokenizer = &tokenizer;
  served.chat_template = chat_template ? &*chat_template : nullptr;
  served.vocab_size = model->config().vocab_size;
  served.max_model_len = engine.options().max_model_len;
  served.default_sampling =
      runtime::default_sampling_params(io::load_generation_defaults(options.model.model_dir));
  options.server.model_root = options.model.model_dir;

  server::HttpServer http(engine, served, options.server);
  const int port = http.bind();
  engine.start();
  std::printf(
      "swiftkv serve: %s on http://%s:%d (max_model_len %lld, %lld KV blocks of %lld tokens, %zu HTTP "
      "threads)\n",
      served.name.c_str(), options.server.host.c_str(), port, (long long)served.max_model_len,
      (long long)engine.num_blocks(), (long long)engine.options().block_size, http.thread_count());
  std::fflush(stdout);
  shutdown.watch([&http] { http.stop(); });
  http.run();
  shutdown.served();
  engine.stop();
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto options = std::make_shared<ServeOptions>();
  CLI::App* command =
      app.add_subcommand("serve", "OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions)");
  add_model_options(*command, options->model);
  server::ServerOptions& server = options->server;
  runtime::EngineOptions& engine = options->engine;
  command->add_option("--host", server.host, "address to listen on")->capture_default_str();
  command->add_option("--port", server.port, "port (0: any free one, printed on stdout)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  command->add_option("--api-key", server.api_key, "require \"Authorization: Bearer KEY\" on /v1/*")
      ->envname("SWIFTKV_API_KEY");
  command->add_option("--served-model-name", options->served_model_name,
                      "the model name clients use (default: the -m argument)");
  command->add_option("--chat-template", options->chat_template_path,
                      "Jinja chat template file (default: tokenizer_config.json's)");
  command
      ->add_option("--max-waiting-requests", server.max_waiting_requests,
                   "requests queued beyond --max-num-seqs; more are refused with 503")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20))
      ->capture_default_str();
  command->add_option("--kv-cache-memory", options->kv_cache_memory,
                      "KV cache pool size, e.g. 4GiB, 512MiB (default: enough for --max-num-seqs full-length "
                      "requests, at most 4 GiB)");
  command->add_option("--max-model-len", engine.max_model_len, "context length (default: the model's)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  command
      ->add_option("--max-num-batched-tokens", engine.max_num_batched_tokens,
                   "tokens per engine step at most")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30))
      ->capture_default_str();
  command->add_option("--max-num-seqs", engine.max_num_seqs, "requests running at once at most")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 16))
      ->capture_default_str();
  command->add_option("--block-size", engine.block_size, "tokens per KV cache block")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 16))
      ->capture_default_str();
  command->add_flag("--enable-prefix-caching,!--no-enable-prefix-caching", engine.enable_prefix_caching,
                    "reuse the KV of shared prompt prefixes (default: on)");
  command->callback([options] { run_serve(*options); });
}

}  // namespace swiftkv::cli
