// Reader for GGUF v2/v3 files (llama.cpp's model format): metadata, tensor directory, and
// dequantized tensor data, over a memory mapping.
//
// Layout (little-endian): "GGUF", u32 version, u64 tensor_count, u64 kv_count; kv_count entries of
// (string key, u32 value type, value); tensor_count entries of (string name, u32 n_dims,
// u64 dims[n_dims], u32 ggml type, u64 offset); padding to `general.alignment` (default 32);
// tensor data, each tensor at data_start + offset. Strings are u64 length + bytes. dims[0] is
// the fastest-varying axis, so a PyTorch (out, in) weight is stored with dims {in, out}.
#ifndef SCHISM_COMMON_FORMATS_GGUF_READER_H_
#define SCHISM_COMMON_FORMATS_GGUF_READER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "common/formats/mapped_file.h"

namespace schism::formats {

// One metadata value. Integers of every width are widened; arrays hold values of one type.
struct GgufValue {
  using Array = std::vector<GgufValue>;
  std::variant<uint64_t, int64_t, double, bool, std::string, Array> value;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<uint64_t> dims;  // GGUF order: dims[0] fastest
  uint32_t type = 0;           // GgmlType id
  uint64_t offset = 0;         // absolute offset of the data in the file
  uint64_t n_elements = 0;
  uint64_t n_bytes = 0;  // 0 for unsupported types (their size is unknown to schism)
};

class GgufReader {
 public:
  // Maps and parses the header, metadata and tensor directory. Errors name the file and the
  // byte offset where parsing failed (truncation, bad magic, unknown value type, out-of-range
  // tensor data).
  static absl::StatusOr<std::unique_ptr<GgufReader>> Open(const std::string& path);

  uint32_t version() const { return version_; }
  const std::string& path() const { return file_->path(); }
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }

  // Typed metadata access; a missing key or wrong type is an error naming the key.
  absl::StatusOr<std::string> GetString(const std::string& key) const;
  absl::StatusOr<int64_t> GetInt(const std::string& key) const;
  absl::StatusOr<double> GetFloat(const std::string& key) const;
  absl::StatusOr<bool> GetBool(const std::string& key) const;
  absl::StatusOr<std::vector<std::string>> GetStringArray(const std::string& key) const;
  absl::StatusOr<std::vector<int64_t>> GetIntArray(const std::string& key) const;
  absl::StatusOr<std::vector<float>> GetFloatArray(const std::string& key) const;
  bool Has(const std::string& key) const { return metadata_.count(key) > 0; }

  const GgufTensorInfo* FindTensor(const std::string& name) const;
  // The start of the mapping; a tensor's bytes are at mapping_data() + offset.
  const uint8_t* mapping_data() const { return file_->data(); }

  // Dequantizes a whole tensor to float32 into `dst` (n_elements floats). Unsupported types are
  // an error naming the tensor and its type.
  absl::Status ReadTensorAsFloat(const GgufTensorInfo& tensor, float* dst) const;

 private:
  explicit GgufReader(std::unique_ptr<MappedFile> file) : file_(std::move(file)) {}
  absl::Status Parse();

  std::unique_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

}  // namespace schism::formats

#endif  // SCHISM_COMMON_FORMATS_GGUF_READER_H_
