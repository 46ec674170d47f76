#include <cstdio>
#include <exception>
#include <new>
#include <string>
#include <vector>

#include "cli/commands.h"

int main(int argc, char** argv) {
  // Inputs are validated where they are read; this is the net under that: an exception that
  // still escapes (a library on an input it rejects) ends the command with its message and
  // exit code 1, never an abort.
  try {
    return schism::cli::RunSchism(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr,
                 "schism: out of memory (an input asked for more memory than this machine has; "
                 "a size read from a corrupt file?)\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "schism: error: %s\n", e.what());
  }
  return 1;
}
