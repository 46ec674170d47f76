// One string column of an Apache Arrow IPC file, read through Arrow's own C++ library (the
// libarrow that PyPI's pyarrow wheel ships; scripts/setup installs it next to torch). This is
// what Hugging Face `datasets` writes: `Dataset.save_to_disk` stores its table as
// data-NNNNN-of-NNNNN.arrow files in the IPC *stream* format; the IPC *file* format ("ARROW1"
// magic, as pyarrow.ipc.new_file and Feather v2 write it) is read too.
#ifndef SCHISM_COMMON_FORMATS_ARROW_COLUMN_H_
#define SCHISM_COMMON_FORMATS_ARROW_COLUMN_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace schism::formats {

// The values of `column` (utf8, large_utf8 or utf8_view) in row
// order, every record batch of the file. Errors name the file and say what is wrong: not an
// Arrow file, a truncated or corrupt one (Arrow's own validation of every batch), no such column
// (listing those there are), a column that is not text, a null value (naming its row).
absl::StatusOr<std::vector<std::string>> ReadArrowStringColumn(const std::string& path,
                                                               const std::string& column);

// The same for a Parquet file (what Hub dataset snapshots hold), read through pyarrow's
// libparquet in a plugin that arrow_column.cc loads on first use (parquet_plugin.cc says why).
// Errors as above; a missing plugin is UNIMPLEMENTED, saying where it was looked for.
absl::StatusOr<std::vector<std::string>> ReadParquetStringColumn(const std::string& path,
                                                                 const std::string& column);

// False in a build without libarrow (arrow_column_absent.cc: a runtime-only build where pyarrow
// is missing, and the torch-free -DSCHISM_COORDINATOR_ONLY build), where the above always fails.
bool ArrowColumnsSupported();

}  // namespace schism::formats

#endif  // SCHISM_COMMON_FORMATS_ARROW_COLUMN_H_
