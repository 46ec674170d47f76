#include "common/formats/byte_ranges.h"

#include <algorithm>

namespace schism::formats {

std::optional<std::pair<size_t, size_t>> FirstOverlap(std::vector<ByteRange> ranges) {
  std::erase_if(ranges, [](const ByteRange& r) { return r.size == 0; });
  std::sort(ranges.begin(), ranges.end(),
            [](const ByteRange& a, const ByteRange& b) { return a.offset < b.offset; });
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].offset - ranges[i - 1].offset < ranges[i - 1].size)
      return std::pair{ranges[i - 1].index, ranges[i].index};
  }
  return std::nullopt;
}

}  // namespace schism::formats
