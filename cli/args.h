// A subcommand's flag table and what it drives: parsing (`--flag value`, `--flag=value`, boolean
// `--flag`, positionals), the usage line and `--help`. Each flag is declared once, in its
// command's table, so what a command accepts and what its help lists cannot disagree.
#ifndef SCHISM_CLI_ARGS_H_
#define SCHISM_CLI_ARGS_H_

#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace schism::cli {

class Args;

struct Flag {
  std::string name;  // without the leading "--", e.g. "model"
  std::string
      value_hint;    // the value in the usage line, e.g. "N", "cpu|cuda:N"; empty: a boolean flag
  std::string help;  // one line (it is wrapped) for --help
  bool required = false;  // the command refuses to run without it
};

// Several groups of flags as one table, for groups that several commands share.
std::vector<Flag> JoinFlags(std::initializer_list<std::vector<Flag>> groups);

// One subcommand of `schism`. Every command also takes --help, which prints HelpText. (The `= {}`
// initializers let a table leave a field out without -Wextra's missing-initializer warning.)
struct Command {
  std::string name;  // `schism NAME`
  std::vector<std::string> operands =
      {};  // the positionals, e.g. {"STUDY", "TRIAL"}; "[CONFIG.toml]" is optional
  std::string summary = {};  // one line in `schism --help`
  std::vector<Flag> flags = {};
  std::function<int(const Args&)> run = {};  // the parsed arguments; returns the exit code
  // The command runs a model (libtorch): absent from the schism-coordinator binary.
  bool needs_runtime = false;
  std::string notes = {};  // what --help prints after the flags
  // Set for the second form of a command with two (export through a coordinator): argv holding
  // --<form_flag> selects this form over the one that leaves it empty.
  std::string form_flag = {};
};

// "usage: schism NAME OPERANDS --required V [--optional V] [--boolean] ...": the required flags
// first, then the others in table order, wrapped to 100 columns under the first operand.
std::string UsageLine(const Command& command);
// "schism NAME OPERANDS --required V [flags]": the command's line in `schism --help`.
std::string Synopsis(const Command& command);
// The usage line, the summary and every flag the command takes (--help too) with its help, then the
// notes.
std::string HelpText(const Command& command);

class Args {
 public:
  // Parses argv against the command's flags and --help. A flag not in the table, a boolean flag
  // given a value and a value flag without one are errors naming the flag; so are a missing
  // required flag and positionals that do not fit the operands, unless --help is given.
  // `command` must outlive the Args.
  static absl::StatusOr<Args> Parse(const std::vector<std::string>& argv, const Command& command);

  const Command& command() const { return *command_; }  // what argv was parsed for

  bool Has(const std::string& flag) const { return values_.count(flag) > 0; }
  std::optional<std::string> Get(const std::string& flag) const;
  // Parses an integer flag; a non-integer value is an error naming the flag.
  absl::StatusOr<std::optional<long>> GetInt(const std::string& flag) const;
  const std::vector<std::string>& positionals() const { return positionals_; }
  // The arguments as given (after the command name), to start another process with the same.
  const std::vector<std::string>& argv() const { return argv_; }

 private:
  explicit Args(const Command* command) : command_(command) {}

  const Command* command_;
  std::map<std::string, std::string> values_;
  std::vector<std::string> positionals_;
  std::vector<std::string> argv_;
};

}  // namespace schism::cli

#endif  // SCHISM_CLI_ARGS_H_
