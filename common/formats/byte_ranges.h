// What the tensor-file readers (GGUF, safetensors) check alike in a header that may lie: element
// counts bounded so their products cannot wrap, and tensors that share no bytes.
#ifndef SCHISM_COMMON_FORMATS_BYTE_RANGES_H_
#define SCHISM_COMMON_FORMATS_BYTE_RANGES_H_

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace schism::formats {

// Elements one tensor may have (checked dimension by dimension, by division).
inline constexpr uint64_t kMaxTensorElements = uint64_t{1} << 40;

// Tensor `index` of a file occupies [offset, offset + size).
struct ByteRange {
  uint64_t offset = 0, size = 0;
  size_t index = 0;
};

// The indices of two ranges that share bytes (the first such pair by offset; empty ranges share
// nothing), or nullopt.
std::optional<std::pair<size_t, size_t>> FirstOverlap(std::vector<ByteRange> ranges);

}  // namespace schism::formats

#endif  // SCHISM_COMMON_FORMATS_BYTE_RANGES_H_
