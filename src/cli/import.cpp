// swiftkv import llama2c: turn a llama2.c checkpoint into a Hugging Face model directory.
#include <iostream>

#include "cli/commands.h"
#include "io/llama2c.h"

namespace swiftkv::cli {

void add_import_command(CLI::App& app) {
  struct Options {
    std::string model, tokenizer, out;
  };
  auto options = std::make_shared<Options>();
  CLI::App* import =
      app.add_subcommand("import", "Convert other checkpoint formats to a Hugging Face directory");
  import->require_subcommand(1);
  CLI::App* llama2c = import->add_subcommand("llama2c", "llama2.c model.bin + tokenizer.bin");
  llama2c->add_option("--model", options->model, "llama2.c checkpoint (e.g. stories260K.bin)")->required();
  llama2c->add_option("--tokenizer", options->tokenizer, "llama2.c tokenizer (e.g. tok512.bin)")->required();
  llama2c->add_option("--out", options->out, "output directory")->required();
  llama2c->callback([options] {
    io::import_llama2c(options->model, options->tokenizer, options->out);
    std::cout << "wrote " << options->out << "\n";
  });
}

}  // namespace swiftkv::cli
