// The subcommands of `schism` (DESIGN.md §8) and their dispatch.
#ifndef SCHISM_CLI_COMMANDS_H_
#define SCHISM_CLI_COMMANDS_H_

#include <string>
#include <vector>

namespace schism::cli {

// Exit codes shared by every subcommand (DESIGN.md §8).
inline constexpr int kExitOk = 0;
inline constexpr int kExitRuntimeError = 1;
inline constexpr int kExitUsageError = 2;

// Runs `schism <argv...>` (argv excludes the program name) and returns the exit code.
int RunSchism(const std::vector<std::string>& argv);

}  // namespace schism::cli

#endif  // SCHISM_CLI_COMMANDS_H_
