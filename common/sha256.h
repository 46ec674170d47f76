// SHA-256 of files and byte strings as lowercase hex (OpenSSL's libcrypto): what reproduce.json
// records for sources and outputs.
#ifndef SCHISM_COMMON_SHA256_H_
#define SCHISM_COMMON_SHA256_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace schism::common {

std::string Sha256Hex(absl::string_view bytes);

// Reads the file in chunks (never maps it whole); errors name the file.
absl::StatusOr<std::string> Sha256OfFile(const std::string& path);

}  // namespace schism::common

#endif  // SCHISM_COMMON_SHA256_H_
