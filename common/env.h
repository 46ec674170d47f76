// Process-wide environment set-up shared by every schism entry point.
#ifndef SCHISM_COMMON_ENV_H_
#define SCHISM_COMMON_ENV_H_

#include <string>

namespace schism::common {

// Must run at the top of main(), before any libtorch call. Debian's libtorch 1.13 lets oneDNN
// JIT AMX instructions that some CPUs fault on (SIGILL); capping the ISA avoids that. A value the
// user already set is kept.
void ConfigureProcessEnvironment();

// Directory holding the default prompt sets: $SCHISM_DATA if set, else `../shared/datasets`
// beside the source tree this binary was built from (docs/algorithm.md#prompts).
std::string DefaultDataDir();

}  // namespace schism::common

#endif  // SCHISM_COMMON_ENV_H_
