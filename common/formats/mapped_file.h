// A read-only memory mapping of a whole file. Model files are never read into RAM
// (docs/architecture.md#model-formats).
#ifndef SCHISM_COMMON_FORMATS_MAPPED_FILE_H_
#define SCHISM_COMMON_FORMATS_MAPPED_FILE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace schism::formats {

class MappedFile {
 public:
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}

  std::string path_;
  const uint8_t* data_;
  size_t size_;
};

// Tells the kernel that a mapped range will not be read again soon: its pages leave this
// process's resident set (they stay in the page cache and fault back in if touched). Streaming
// readers call this after each tensor so peak RSS tracks one tensor, not the file.
void DropMappedPages(const void* data, size_t n_bytes);

}  // namespace schism::formats

#endif  // SCHISM_COMMON_FORMATS_MAPPED_FILE_H_
