#include "common/formats/arrow_column.h"

#include <arrow/api.h>
#include <arrow/io/file.h>
#include <arrow/ipc/reader.h>

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
  if (index < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": no column \"", column,
                     "\" (columns: ", absl::StrJoin(schema->field_names(), ", "), ")"));
  }
  const arrow::Type::type type = schema->field(index)->type()->id();
  if (type != arrow::Type::STRING && type != arrow::Type::LARGE_STRING &&
      type != arrow::Type::STRING_VIEW) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": column \"", column, "\" holds ",
                                                   schema->field(index)->type()->ToString(),
                                                   ", not text"));
  }
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
    absl::Status appended;
    if (type == arrow::Type::STRING) {
      appended = AppendValues<arrow::StringArray>(values, first_row, path, column, &out);
    } else if (type == arrow::Type::LARGE_STRING) {
      appended = AppendValues<arrow::LargeStringArray>(values, first_row, path, column, &out);
    } else {
      appended = AppendValues<arrow::StringViewArray>(values, first_row, path, column, &out);
    }
    if (!appended.ok()) return appended;
  }
  return out;
}

}  // namespace schism::formats
