// ReadArrowStringColumn in a build without libarrow: a runtime-only build made where pyarrow is
// not installed (the GPU device check), and the torch-free coordinator build (which reads no
// prompt sets). Prompt sets there are text, CSV or JSONL files.
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/formats/arrow_column.h"

namespace schism::formats {

bool ArrowColumnsSupported() { return false; }

absl::StatusOr<std::vector<std::string>> ReadArrowStringColumn(const std::string& path,
                                                               const std::string& column) {
  return absl::UnimplementedError(absl::StrCat(
      path,
      ": this schism was built without Apache Arrow (no pyarrow where it was configured), "
      "so it cannot read Arrow dataset files"));
}

absl::StatusOr<std::vector<std::string>> ReadParquetStringColumn(const std::string& path,
                                                                 const std::string& column) {
  return absl::UnimplementedError(absl::StrCat(
      path,
      ": this schism was built without Apache Arrow (no pyarrow where it was configured), "
      "so it cannot read Parquet dataset files"));
}

}  // namespace schism::formats
