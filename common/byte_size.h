// Sizes as Hugging Face spells max_shard_size: "5GB" (10^9), "500MiB" (2^20), "1048576".
#ifndef SCHISM_COMMON_BYTE_SIZE_H_
#define SCHISM_COMMON_BYTE_SIZE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace schism::common {

// A positive number with an optional unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB; any case).
absl::StatusOr<uint64_t> ParseByteSize(const std::string& text);

}  // namespace schism::common

#endif  // SCHISM_COMMON_BYTE_SIZE_H_
