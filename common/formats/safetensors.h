// Hugging Face safetensors: a memory-mapped reader (single files and sharded models with
// model.safetensors.index.json) and a streaming writer that shards by size.
//
// File layout: u64 little-endian header length N; N bytes of JSON
//   {"<name>": {"dtype": "BF16", "shape": [out, in], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"format": "pt"}}
// then the data; offsets are relative to the end of the header, row-major, little-endian.
#ifndef SCHISM_COMMON_FORMATS_SAFETENSORS_H_
#define SCHISM_COMMON_FORMATS_SAFETENSORS_H_

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/formats/mapped_file.h"

namespace schism::formats {

enum class SafetensorsDtype {
  kF64,
  kF32,
  kF16,
  kBF16,
  kI64,
  kI32,
  kI16,
  kI8,
  kU8,
  kBool,
  kF8E4M3,
  kF8E5M2,
  kU16,
  kU32,
  kU64
};

std::optional<SafetensorsDtype> ParseSafetensorsDtype(const std::string& name);
const char* SafetensorsDtypeName(SafetensorsDtype dtype);
size_t SafetensorsDtypeSize(SafetensorsDtype dtype);

struct SafetensorsTensor {
  std::string name;
  SafetensorsDtype dtype;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // points into the mapping
  size_t n_bytes = 0;
  int64_t n_elements() const;
};

class SafetensorsFile {
 public:
  // Validates the header completely: JSON, dtypes, shapes against byte ranges, ranges inside the
  // file. Errors name the file, and the tensor where one is at fault.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  const SafetensorsTensor* Find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  explicit SafetensorsFile(std::unique_ptr<MappedFile> file) : file_(std::move(file)) {}
  std::unique_ptr<MappedFile> file_;
  std::vector<SafetensorsTensor> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a model folder: model.safetensors, or the shards its index names.
class SafetensorsModel {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsModel>> Open(const std::string& folder);
  const SafetensorsTensor* Find(const std::string& name) const;
  std::vector<std::string> TensorNames() const;
  const std::vector<std::unique_ptr<SafetensorsFile>>& shards() const { return shards_; }

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::map<std::string, const SafetensorsTensor*> tensors_;
};

// Converts F32/F16/BF16/F64 tensor data to float32; other dtypes are an error naming the tensor.
absl::Status ReadSafetensorAsFloat(const SafetensorsTensor& tensor, float* dst);

// Writes tensors in the order added into shards of at most `max_shard_bytes` of data (a tensor
// larger than that gets a shard of its own), named model-0000i-of-0000n.safetensors plus
// model.safetensors.index.json, or a single model.safetensors when everything fits in one
// ("model" is `base_name`; PEFT adapters use "adapter_model").
// Data streams to disk as it is added; memory use does not grow with the model.
class SafetensorsWriter {
 public:
  SafetensorsWriter(std::string folder, uint64_t max_shard_bytes,
                    std::map<std::string, std::string> metadata = {{"format", "pt"}},
                    std::string base_name = "model");
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  absl::Status Add(const std::string& name, SafetensorsDtype dtype,
                   const std::vector<int64_t>& shape, const void* data, size_t n_bytes);
  // Writes headers, renames shards to their final names and writes the index.
  absl::Status Finish();
  // Paths of the files written by Finish (shards, then the index if any).
  const std::vector<std::string>& written_files() const { return written_; }

 private:
  struct Entry {
    std::string name;
    SafetensorsDtype dtype;
    std::vector<int64_t> shape;
    uint64_t begin, end;
  };
  struct Shard {
    std::string data_path;  // temporary file with the raw tensor bytes
    std::vector<Entry> entries;
    uint64_t bytes = 0;
  };
  absl::Status StartShard();
  absl::Status CloseData();

  std::string folder_;
  uint64_t max_shard_bytes_;
  std::string base_name_;
  std::map<std::string, std::string> metadata_;
  std::vector<Shard> shards_;
  std::FILE* data_ = nullptr;
  std::vector<std::string> written_;
  bool finished_ = false;
};

}  // namespace schism::formats

#endif  // SCHISM_COMMON_FORMATS_SAFETENSORS_H_
