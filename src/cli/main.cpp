// swiftkv: fast Llama / SwiftKV inference on CPU. One file per subcommand.
#include <iostream>

#include "cli/commands.h"
#include "common/error.h"

int main(int argc, char** argv) {
  CLI::App app{"swiftkv: Llama-family inference with SwiftKV (prompt tokens skip the later layers)"};
  app.require_subcommand(1);
  swiftkv::cli::add_generate_command(app);
  swiftkv::cli::add_serve_command(app);
  swiftkv::cli::add_inspect_command(app);
  swiftkv::cli::add_import_command(app);
  swiftkv::cli::add_random_model_command(app);
  swiftkv::cli::add_bench_command(app);
#ifdef SWIFTKV_HAVE_TRAINER
  swiftkv::cli::add_distill_command(app);
#endif
  swiftkv::cli::add_convert_command(app);
  swiftkv::cli::add_eval_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::cerr << "swiftkv: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
