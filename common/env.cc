#include "common/env.h"

#include <cstdlib>

#ifndef SCHISM_SOURCE_DIR
#error "SCHISM_SOURCE_DIR must be defined by the build"
#endif

namespace schism::common {

std::string DefaultDataDir() {
  if (const char* dir = std::getenv("SCHISM_DATA"); dir != nullptr && *dir != '\0') return dir;
  return std::string(SCHISM_SOURCE_DIR) + "/../shared/datasets";
}

}  // namespace schism::common
