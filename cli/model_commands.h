// Subcommands that run a model locally on this machine: `generate` and `chat`.
#ifndef SCHISM_CLI_MODEL_COMMANDS_H_
#define SCHISM_CLI_MODEL_COMMANDS_H_

#include <string>
#include <vector>

namespace schism::cli {

int RunGenerate(const std::vector<std::string>& argv);
int RunChat(const std::vector<std::string>& argv);

}  // namespace schism::cli

#endif  // SCHISM_CLI_MODEL_COMMANDS_H_
