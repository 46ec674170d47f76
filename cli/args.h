// Command-line arguments of one subcommand: `--flag value`, `--flag=value`, boolean `--flag`,
// and positionals. Each subcommand declares its flags so a typo is an error naming the flag.
#ifndef SCHISM_CLI_ARGS_H_
#define SCHISM_CLI_ARGS_H_

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace schism::cli {

struct FlagSpec {
  std::set<std::string> with_value;  // e.g. "model", "trials"
  std::set<std::string> boolean;     // e.g. "json", "help"
};

class Args {
 public:
  static absl::StatusOr<Args> Parse(const std::vector<std::string>& argv, const FlagSpec& spec);

  bool Has(const std::string& flag) const { return values_.count(flag) > 0; }
  std::optional<std::string> Get(const std::string& flag) const;
  // Parses an integer flag; a non-integer value is an error naming the flag.
  absl::StatusOr<std::optional<long>> GetInt(const std::string& flag) const;
  const std::vector<std::string>& positionals() const { return positionals_; }

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::string> positionals_;
};

}  // namespace schism::cli

#endif  // SCHISM_CLI_ARGS_H_
