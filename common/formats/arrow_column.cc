#include "common/formats/arrow_column.h"

#include <arrow/api.h>
#include <arrow/io/file.h>
#include <arrow/ipc/reader.h>
#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace schism::formats {

bool ArrowColumnsSupported() { return true; }

namespace {

template <typename Array>
absl::Status AppendValues(const arrow::Array& chunk, int64_t first_row, const std::string& path,
                          const std::string& column, std::vector<std::string>* out) {
  const auto& values = static_cast<const Array&>(chunk);
  for (int64_t i = 0; i < values.length(); ++i) {
    if (values.IsNull(i)) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": column \"", column, "\", row ",
                                                     first_row + i, " is null, not a prompt"));
    }
    const auto view = values.GetView(i);
    out->emplace_back(view.data(), view.size());
  }
  return absl::OkStatus();
}

// A text column's values, chunk by chunk, whatever its string layout.
absl::Status AppendColumn(const arrow::Array& chunk, arrow::Type::type type, int64_t first_row,
                          const std::string& path, const std::string& column,
                          std::vector<std::string>* out) {
  if (type == arrow::Type::STRING)
    return AppendValues<arrow::StringArray>(chunk, first_row, path, column, out);
  if (type == arrow::Type::LARGE_STRING)
    return AppendValues<arrow::LargeStringArray>(chunk, first_row, path, column, out);
  return AppendValues<arrow::StringViewArray>(chunk, first_row, path, column, out);
}

absl::Status CheckText(const arrow::DataType& type, const std::string& path,
                       const std::string& column) {
  const arrow::Type::type id = type.id();
  if (id == arrow::Type::STRING || id == arrow::Type::LARGE_STRING ||
      id == arrow::Type::STRING_VIEW)
    return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": column \"", column, "\" holds ", type.ToString(), ", not text"));
}

absl::Status NoColumn(const std::string& path, const std::string& column,
                      const std::vector<std::string>& columns) {
  return absl::InvalidArgumentError(absl::StrCat(
      path, ": no column \"", column, "\" (columns: ", absl::StrJoin(columns, ", "), ")"));
}

absl::Status FromArrow(const arrow::Status& status, const std::string& path, const char* what) {
  if (status.ok()) return absl::OkStatus();
  return absl::DataLossError(
      absl::StrCat(path, ": not a readable Arrow IPC file (", what, "): ", status.message()));
}

// Both IPC formats as one sequence of record batches.
class BatchSource {
 public:
  static absl::StatusOr<BatchSource> Open(const std::string& path) {
    auto file = arrow::io::ReadableFile::Open(path);
    if (!file.ok()) {
      return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", file.status().message()));
    }
    BatchSource source;
    auto magic = (*file)->ReadAt(0, 6);
    if (!magic.ok()) return FromArrow(magic.status(), path, "reading its start");
    if ((*magic)->ToString() == "ARROW1") {
      auto reader = arrow::ipc::RecordBatchFileReader::Open(*file);
      if (!reader.ok()) return FromArrow(reader.status(), path, "IPC file footer");
      source.file_reader_ = *reader;
      source.schema_ = source.file_reader_->schema();
    } else {
      if (auto seek = (*file)->Seek(0); !seek.ok()) return FromArrow(seek, path, "seek");
      auto reader = arrow::ipc::RecordBatchStreamReader::Open(*file);
      if (!reader.ok()) return FromArrow(reader.status(), path, "IPC stream schema");
      source.stream_reader_ = *reader;
      source.schema_ = source.stream_reader_->schema();
    }
    return source;
  }

  const std::shared_ptr<arrow::Schema>& schema() const { return schema_; }

  // The next batch, or null after the last one.
  arrow::Result<std::shared_ptr<arrow::RecordBatch>> Next() {
    if (stream_reader_) {
      std::shared_ptr<arrow::RecordBatch> batch;
      ARROW_RETURN_NOT_OK(stream_reader_->ReadNext(&batch));
      return batch;
    }
    if (next_batch_ >= file_reader_->num_record_batches())
      return std::shared_ptr<arrow::RecordBatch>();
    return file_reader_->ReadRecordBatch(next_batch_++);
  }

 private:
  std::shared_ptr<arrow::Schema> schema_;
  std::shared_ptr<arrow::ipc::RecordBatchStreamReader> stream_reader_;
  std::shared_ptr<arrow::ipc::RecordBatchFileReader> file_reader_;
  int next_batch_ = 0;
};

}  // namespace

absl::StatusOr<std::vector<std::string>> ReadArrowStringColumn(const std::string& path,
                                                               const std::string& column) {
  auto source = BatchSource::Open(path);
  if (!source.ok()) return source.status();
  const auto& schema = source->schema();
  const int index = schema->GetFieldIndex(column);
  if (index < 0) return NoColumn(path, column, schema->field_names());
  if (auto text = CheckText(*schema->field(index)->type(), path, column); !text.ok()) return text;
  const arrow::Type::type type = schema->field(index)->type()->id();
  std::vector<std::string> out;
  for (int batch_number = 0;; ++batch_number) {
    auto batch = source->Next();
    const std::string where = absl::StrCat("record batch ", batch_number);
    if (!batch.ok()) return FromArrow(batch.status(), path, where.c_str());
    if (*batch == nullptr) break;
    // Offsets past the data, bad UTF-8, lengths that disagree: Arrow's full validation.
    if (auto valid = (*batch)->ValidateFull(); !valid.ok())
      return FromArrow(valid, path, where.c_str());
    const arrow::Array& values = *(*batch)->column(index);
    const int64_t first_row = static_cast<int64_t>(out.size());
    if (auto s = AppendColumn(values, type, first_row, path, column, &out); !s.ok()) return s;
  }
  return out;
}

namespace {

using ReadParquetColumn = int (*)(const char* path, const char* column,
                                  std::shared_ptr<arrow::ChunkedArray>* out,
                                  std::vector<std::string>* columns, std::string* error);

// libschism_parquet.so (parquet_plugin.cc says why it is a plugin): $SCHISM_PARQUET_PLUGIN, else
// beside the executable or in ../lib from it, else where the build put it. Its libparquet is
// loaded first from libarrow's own folder, so that a copied plugin finds the one that matches.
absl::StatusOr<ReadParquetColumn> LoadParquetPlugin() {
  constexpr int kFlags = RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND;
  Dl_info arrow_info{};
  if (dladdr(reinterpret_cast<void*>(&arrow::default_memory_pool), &arrow_info) != 0 &&
      arrow_info.dli_fname != nullptr) {
    std::string parquet = arrow_info.dli_fname;
    const size_t at = parquet.rfind("libarrow.so");
    if (at != std::string::npos) {
      parquet.replace(at, 8, "libparquet");
      (void)dlopen(parquet.c_str(), kFlags);  // else the plugin's RUNPATH finds it
    }
  }
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("SCHISM_PARQUET_PLUGIN"); env != nullptr && *env != '\0')
    candidates.push_back(env);
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    candidates.push_back((exe.parent_path() / "libschism_parquet.so").string());
    candidates.push_back(
        (exe.parent_path().parent_path() / "lib" / "libschism_parquet.so").string());
  }
#ifdef SCHISM_PARQUET_PLUGIN
  candidates.push_back(SCHISM_PARQUET_PLUGIN);
#endif
  std::string tried;
  for (const std::string& path : candidates) {
    if (!std::filesystem::exists(path, ec)) continue;
    void* handle = dlopen(path.c_str(), kFlags);
    if (handle == nullptr) {
      absl::StrAppend(&tried, "; ", path, ": ", dlerror());
      continue;
    }
    if (void* fn = dlsym(handle, "schism_parquet_read_column"))
      return reinterpret_cast<ReadParquetColumn>(fn);
    absl::StrAppend(&tried, "; ", path, ": no schism_parquet_read_column");
  }
  return absl::UnimplementedError(absl::StrCat(
      "reading Parquet needs libschism_parquet.so (built beside schism where pyarrow ships "
      "libparquet; SCHISM_PARQUET_PLUGIN names another)",
      tried.empty() ? ", and none was found" : tried));
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ReadParquetStringColumn(const std::string& path,
                                                                 const std::string& column) {
  static const auto* plugin = new absl::StatusOr<ReadParquetColumn>(LoadParquetPlugin());
  if (!plugin->ok())
    return absl::Status(plugin->status().code(),
                        absl::StrCat(path, ": ", plugin->status().message()));
  std::shared_ptr<arrow::ChunkedArray> values;
  std::vector<std::string> columns;
  std::string error;
  switch ((**plugin)(path.c_str(), column.c_str(), &values, &columns, &error)) {
    case 0:
      break;
    case 1:
      return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", error));
    case 3:
      return NoColumn(path, column, columns);
    default:
      return absl::DataLossError(absl::StrCat(path, ": not a readable Parquet file: ", error));
  }
  if (auto text = CheckText(*values->type(), path, column); !text.ok()) return text;
  // Offsets past the data, bad UTF-8, lengths that disagree: Arrow's full validation.
  if (auto valid = values->ValidateFull(); !valid.ok())
    return absl::DataLossError(
        absl::StrCat(path, ": not a readable Parquet file: ", valid.message()));
  std::vector<std::string> out;
  for (const auto& chunk : values->chunks()) {
    const int64_t first_row = static_cast<int64_t>(out.size());
    if (auto s = AppendColumn(*chunk, values->type()->id(), first_row, path, column, &out); !s.ok())
      return s;
  }
  return out;
}

}  // namespace schism::formats
