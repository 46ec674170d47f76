// ReadArrowStringColumn in a runtime-only build made where pyarrow is not installed (the GPU
// device check): prompt sets there are text, CSV or JSONL files.
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/formats/arrow_column.h"

namespace schism::formats {

absl::StatusOr<std::vector<std::string>> ReadArrowStringColumn(const std::string& path,
                                                               const std::string& column) {
  return absl::UnimplementedError(absl::StrCat(
      path,
      ": this schism was built without Apache Arrow (no pyarrow where it was configured), "
      "so it cannot read Arrow dataset files"));
}

}  // namespace schism::formats
