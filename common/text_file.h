// Whole-file reads and writes with an error that names the file.
#ifndef SCHISM_COMMON_TEXT_FILE_H_
#define SCHISM_COMMON_TEXT_FILE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace schism::common {

// Creates or truncates `path` and writes `text` (bytes, unchanged).
absl::Status WriteTextFile(const std::string& path, const std::string& text);

// The whole file (bytes, unchanged); NotFound when it cannot be opened.
absl::StatusOr<std::string> ReadTextFile(const std::string& path);

}  // namespace schism::common

#endif  // SCHISM_COMMON_TEXT_FILE_H_
