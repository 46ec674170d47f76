// Small GGUF v3 files written byte by byte, for tests of the readers: metadata entries, a tensor
// directory, then a zero-filled data section (hand-made headers may lie about anything).
#ifndef SCHISM_TESTS_GGUF_WRITER_H_
#define SCHISM_TESTS_GGUF_WRITER_H_

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace schism::testing_support {

class GgufWriter {
 public:
  GgufWriter& String(const std::string& key, const std::string& value) {
    Key(key, 8);
    Text(&metadata_, value);
    return *this;
  }
  GgufWriter& Int64(const std::string& key, int64_t value) {
    Key(key, 11);
    Put(&metadata_, value);
    return *this;
  }
  GgufWriter& Float32(const std::string& key, float value) {
    Key(key, 6);
    Put(&metadata_, value);
    return *this;
  }
  GgufWriter& StringArray(const std::string& key, const std::vector<std::string>& values) {
    Key(key, 9);
    Put(&metadata_, uint32_t{8});  // of strings
    Put(&metadata_, static_cast<uint64_t>(values.size()));
    for (const std::string& v : values) Text(&metadata_, v);
    return *this;
  }
  // A tensor of ggml `type` (0 = F32) whose data starts `offset` bytes into the data section.
  GgufWriter& Tensor(const std::string& name, const std::vector<uint64_t>& dims, uint64_t offset,
                     uint32_t type = 0) {
    Text(&tensors_, name);
    Put(&tensors_, static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) Put(&tensors_, d);
    Put(&tensors_, type);
    Put(&tensors_, offset);
    ++tensor_count_;
    return *this;
  }
  // The file: header, padding to 32 bytes, then `data_bytes` zero bytes. Returns `path`.
  std::string Write(const std::string& path, size_t data_bytes = 0) const {
    std::string b = "GGUF";
    Put(&b, uint32_t{3});
    Put(&b, tensor_count_);
    Put(&b, metadata_count_);
    b += metadata_ + tensors_;
    b.resize((b.size() + 31) / 32 * 32, '\0');
    b.append(data_bytes, '\0');
    std::ofstream(path, std::ios::binary) << b;
    return path;
  }

 private:
  template <typename T>
  static void Put(std::string* b, T v) {
    b->append(reinterpret_cast<const char*>(&v), sizeof(v));
  }
  static void Text(std::string* b, const std::string& text) {
    Put(b, static_cast<uint64_t>(text.size()));
    *b += text;
  }
  void Key(const std::string& key, uint32_t type) {
    Text(&metadata_, key);
    Put(&metadata_, type);
    ++metadata_count_;
  }

  std::string metadata_, tensors_;
  uint64_t metadata_count_ = 0, tensor_count_ = 0;
};

}  // namespace schism::testing_support

#endif  // SCHISM_TESTS_GGUF_WRITER_H_
