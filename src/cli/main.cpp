// swiftkv command line: one file per subcommand (added as the layers land).
#include <iostream>

int main(int argc, char** argv) {
  std::cerr << "swiftkv: no subcommands yet\n";
  return 1;
}
