// FNV-1a checksums for on-disk records (the journal) and artifacts (the directions file):
// cheap, dependency-free detection of torn or corrupted bytes, not a cryptographic hash.
#ifndef SCHISM_COMMON_CHECKSUM_H_
#define SCHISM_COMMON_CHECKSUM_H_

#include <cstddef>
#include <cstdint>

namespace schism::common {

inline uint32_t Fnv1a32(const char* data, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<uint8_t>(data[i]);
    h *= 16777619u;
  }
  return h;
}

inline uint64_t Fnv1a64(const char* data, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<uint8_t>(data[i]);
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace schism::common

#endif  // SCHISM_COMMON_CHECKSUM_H_
