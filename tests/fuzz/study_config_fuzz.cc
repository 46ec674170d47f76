// A study's config.toml (Heretic's keys and [cluster]), as `schism submit` and `run` read it.
#include <cstdint>
#include <string>

#include "coordinator/study_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  (void)schism::coordinator::StudySpecFromToml(text, "fuzz.toml");
  return 0;
}
