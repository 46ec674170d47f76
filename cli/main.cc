#include <string>
#include <vector>

#include "cli/commands.h"
#include "common/env.h"

int main(int argc, char** argv) {
  schism::common::ConfigureProcessEnvironment();
  return schism::cli::RunSchism(std::vector<std::string>(argv + 1, argv + argc));
}
