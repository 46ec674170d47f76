// Heretic 1.4.0 defaults that are lists rather than single values, shared by the config reader
// (which accepts them as they are) and the runtime (which applies them).
#ifndef SCHISM_COMMON_HERETIC_DEFAULTS_H_
#define SCHISM_COMMON_HERETIC_DEFAULTS_H_

#include <string>
#include <utility>
#include <vector>

namespace schism::common {

// Opener -> closed block, Heretic's chain_of_thought_skips: a response prefix that opens a
// reasoning block is replaced by the closed, empty block.
const std::vector<std::pair<std::string, std::string>>& DefaultChainOfThoughtSkips();

// The lm-eval tasks of Heretic's `benchmarks` default, in order: Heretic offers them in its menu
// after a study, which schism does not have.
const std::vector<std::string>& HereticDefaultBenchmarkTasks();

}  // namespace schism::common

#endif  // SCHISM_COMMON_HERETIC_DEFAULTS_H_
