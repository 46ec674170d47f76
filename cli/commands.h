// The subcommands of `schism` (docs/architecture.md#command-line) and their dispatch. commands.cc
// holds the one table of every command: its operands, its flags with their help, and the handler it
// runs.
#ifndef SCHISM_CLI_COMMANDS_H_
#define SCHISM_CLI_COMMANDS_H_

#include <string>
#include <string_view>
#include <vector>

#include "cli/args.h"

namespace schism::cli {

// Exit codes shared by every subcommand (docs/architecture.md#exit-codes).
inline constexpr int kExitOk = 0;
inline constexpr int kExitRuntimeError = 1;
inline constexpr int kExitUsageError = 2;

inline constexpr char kDefaultSystemPrompt[] = "You are a helpful assistant.";

// Whether this binary has the model runtime: true in `schism` (worker_commands.cc), false in
// `schism-coordinator` (runtime_commands_absent.cc), which links no libtorch and leaves out the
// commands marked needs_runtime.
bool ModelRuntimeLinked();

// The handlers of the commands that are or talk to a coordinator, each given the arguments its
// table entry parsed; each returns the exit code. worker_commands.cc:
int RunEmbedded(const Args& args);  // `schism run`
int RunWorker(const Args& args);
int RunExportWorker(const Args& args);
// cluster_commands.cc (torch-free):
int RunCoordinator(const Args& args);
int RunSubmit(const Args& args);
int RunStatus(const Args& args);
int RunTrials(const Args& args);
// `schism export STUDY TRIAL --coordinator H:P ...`: queues the export and waits for it.
int RunRemoteExport(const Args& args);

// Prints "schism COMMAND: MESSAGE" to stderr and returns `code`.
int Fail(std::string_view command, int code, const std::string& message);
// Prints "schism NAME: MESSAGE" and the usage line of the command `args` were parsed for to
// stderr; returns kExitUsageError.
int UsageError(const Args& args, const std::string& message);

// The handlers of the commands that run on this machine alone.
int RunExport(const Args& args);     // export_commands.cc: from a study folder or a params file
int RunEvaluate(const Args& args);   // evaluate_command.cc
int RunGenerate(const Args& args);   // model_commands.cc
int RunChat(const Args& args);       // model_commands.cc
int RunTpeReplay(const Args& args);  // tpe_replay_command.cc

// Every command, in `schism --help` order; export stands there twice, once for each form.
const std::vector<Command>& Commands();

// Runs `schism <argv...>` (argv excludes the program name) and returns the exit code.
int RunSchism(const std::vector<std::string>& argv);

}  // namespace schism::cli

#endif  // SCHISM_CLI_COMMANDS_H_
