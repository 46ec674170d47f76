// The process environment every schism entry point reads.
#ifndef SCHISM_COMMON_ENV_H_
#define SCHISM_COMMON_ENV_H_

#include <string>

namespace schism::common {

// Directory holding the default prompt sets: $SCHISM_DATA if set, else `../shared/datasets`
// beside the source tree this binary was built from (docs/algorithm.md#prompts).
std::string DefaultDataDir();

}  // namespace schism::common

#endif  // SCHISM_COMMON_ENV_H_
