// libschism_parquet.so: the one place that links pyarrow's libparquet. That library carries its
// own copy of OpenSSL and exports every symbol of it, which would interpose on the libssl and
// libcrypto gRPC uses if the schism binary linked it. So nothing links this plugin: arrow_column.cc
// dlopens it (RTLD_LOCAL | RTLD_DEEPBIND) on the first Parquet file, keeping libparquet's symbols
// out of the global scope, and calls the one function below. libarrow is the process's own (already
// loaded), so the column it returns is an ordinary arrow::ChunkedArray.
#include <arrow/api.h>
#include <arrow/io/file.h>
#include <parquet/arrow/reader.h>
#include <parquet/exception.h>

#include <memory>
#include <string>
#include <vector>

// Reads column `column` of the Parquet file `path` into *out. Returns 0 on success; 1 when the
// file cannot be opened, 2 when it is not a readable Parquet file (`error` says why), 3 when it
// has no such top-level column (`columns` lists those it has).
extern "C" __attribute__((visibility("default"))) int schism_parquet_read_column(
    const char* path, const char* column, std::shared_ptr<arrow::ChunkedArray>* out,
    std::vector<std::string>* columns, std::string* error) {
  try {
    auto file = arrow::io::ReadableFile::Open(path);
    if (!file.ok()) {
      *error = file.status().message();
      return 1;
    }
    auto reader = parquet::arrow::OpenFile(*file, arrow::default_memory_pool());
    if (!reader.ok()) {
      *error = reader.status().message();
      return 2;
    }
    std::shared_ptr<arrow::Schema> schema;
    if (auto s = (*reader)->GetSchema(&schema); !s.ok()) {
      *error = s.message();
      return 2;
    }
    const int index = schema->GetFieldIndex(column);
    if (index < 0) {
      *columns = schema->field_names();
      return 3;
    }
    if (auto s = (*reader)->ReadColumn(index, out); !s.ok()) {
      *error = s.message();
      return 2;
    }
    return 0;
  } catch (const std::exception& e) {  // parquet::ParquetException on some corrupt files
    *error = e.what();
    return 2;
  }
}
