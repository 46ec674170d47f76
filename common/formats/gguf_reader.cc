#include "common/formats/gguf_reader.h"

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/formats/byte_ranges.h"
#include "common/formats/ggml_types.h"

namespace schism::formats {
namespace {

constexpr uint64_t kMaxDims = 8;
constexpr uint64_t kMaxArrayNesting = 4;

enum GgufValueType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};

// Bounds-checked little-endian cursor over the mapping. Every read failure reports the offset.
class Cursor {
 public:
  Cursor(const MappedFile& file) : file_(file) {}

  size_t offset() const { return pos_; }

  absl::Status Need(uint64_t n, const char* what) {
    if (n > file_.size() - pos_) {
      return absl::DataLossError(absl::StrCat(file_.path(), ": truncated at offset ", pos_,
                                              " while reading ", what, " (", n, " bytes needed, ",
                                              file_.size() - pos_, " left)"));
    }
    return absl::OkStatus();
  }

  template <typename T>
  absl::StatusOr<T> Read(const char* what) {
    if (auto s = Need(sizeof(T), what); !s.ok()) return s;
    T value;
    std::memcpy(&value, file_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }

  absl::StatusOr<std::string> ReadString(const char* what) {
    auto length = Read<uint64_t>(what);
    if (!length.ok()) return length.status();
    if (auto s = Need(*length, what); !s.ok()) return s;
    std::string out(reinterpret_cast<const char*>(file_.data() + pos_), *length);
    pos_ += *length;
    return out;
  }

 private:
  const MappedFile& file_;
  size_t pos_ = 0;
};

absl::StatusOr<GgufValue> ReadValue(Cursor& cursor, uint32_t type, uint64_t depth,
                                    const std::string& key, const std::string& path) {
#define SCHISM_READ_SCALAR(T, Wide)            \
  {                                            \
    auto v = cursor.Read<T>("metadata value"); \
    if (!v.ok()) return v.status();            \
    return GgufValue{static_cast<Wide>(*v)};   \
  }
  switch (type) {
    case kU8:
      SCHISM_READ_SCALAR(uint8_t, uint64_t)
    case kI8:
      SCHISM_READ_SCALAR(int8_t, int64_t)
    case kU16:
      SCHISM_READ_SCALAR(uint16_t, uint64_t)
    case kI16:
      SCHISM_READ_SCALAR(int16_t, int64_t)
    case kU32:
      SCHISM_READ_SCALAR(uint32_t, uint64_t)
    case kI32:
      SCHISM_READ_SCALAR(int32_t, int64_t)
    case kU64:
      SCHISM_READ_SCALAR(uint64_t, uint64_t)
    case kI64:
      SCHISM_READ_SCALAR(int64_t, int64_t)
    case kF32:
      SCHISM_READ_SCALAR(float, double)
    case kF64:
      SCHISM_READ_SCALAR(double, double)
    case kBool: {
      auto v = cursor.Read<uint8_t>("metadata bool");
      if (!v.ok()) return v.status();
      return GgufValue{*v != 0};
    }
    case kString: {
      auto s = cursor.ReadString("metadata string");
      if (!s.ok()) return s.status();
      return GgufValue{std::move(*s)};
    }
    case kArray: {
      if (depth >= kMaxArrayNesting) {
        return absl::DataLossError(absl::StrCat(path, ": metadata key ", key,
                                                ": arrays nested too deeply at offset ",
                                                cursor.offset()));
      }
      auto item_type = cursor.Read<uint32_t>("array item type");
      if (!item_type.ok()) return item_type.status();
      auto count = cursor.Read<uint64_t>("array length");
      if (!count.ok()) return count.status();
      // Every item takes at least one byte, so a count beyond the file is corruption.
      if (auto s = cursor.Need(*count, "array items"); !s.ok()) return s;
      GgufValue::Array items;
      items.reserve(*count);
      for (uint64_t i = 0; i < *count; ++i) {
        auto item = ReadValue(cursor, *item_type, depth + 1, key, path);
        if (!item.ok()) return item.status();
        items.push_back(std::move(*item));
      }
      return GgufValue{std::move(items)};
    }
  }
#undef SCHISM_READ_SCALAR
  return absl::DataLossError(absl::StrCat(path, ": metadata key ", key, ": unknown value type ",
                                          type, " at offset ", cursor.offset()));
}

}  // namespace

absl::StatusOr<std::unique_ptr<GgufReader>> GgufReader::Open(const std::string& path) {
  auto file = MappedFile::Open(path);
  if (!file.ok()) return file.status();
  std::unique_ptr<GgufReader> reader(new GgufReader(std::move(*file)));
  if (auto s = reader->Parse(); !s.ok()) return s;
  return reader;
}

absl::Status GgufReader::Parse() {
  const std::string& path = file_->path();
  Cursor cursor(*file_);
  auto magic = cursor.Read<uint32_t>("magic");
  if (!magic.ok()) return magic.status();
  if (*magic != 0x46554747u) {  // "GGUF"
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a GGUF file (bad magic)"));
  }
  auto version = cursor.Read<uint32_t>("version");
  if (!version.ok()) return version.status();
  if (*version != 2 && *version != 3) {
    return absl::UnimplementedError(
        absl::StrCat(path, ": GGUF version ", *version, " is not supported (expected 2 or 3)"));
  }
  version_ = *version;
  auto tensor_count = cursor.Read<uint64_t>("tensor count");
  if (!tensor_count.ok()) return tensor_count.status();
  auto kv_count = cursor.Read<uint64_t>("metadata count");
  if (!kv_count.ok()) return kv_count.status();
  if (*tensor_count > file_->size() || *kv_count > file_->size()) {
    return absl::DataLossError(absl::StrCat(path, ": implausible counts (", *tensor_count,
                                            " tensors, ", *kv_count, " metadata keys)"));
  }

  for (uint64_t i = 0; i < *kv_count; ++i) {
    auto key = cursor.ReadString("metadata key");
    if (!key.ok()) return key.status();
    auto type = cursor.Read<uint32_t>("metadata value type");
    if (!type.ok()) return type.status();
    auto value = ReadValue(cursor, *type, 0, *key, path);
    if (!value.ok()) return value.status();
    if (!metadata_.emplace(*key, std::move(*value)).second) {
      return absl::DataLossError(absl::StrCat(path, ": metadata key ", *key, " appears twice"));
    }
  }

  uint64_t alignment = 32;
  if (Has("general.alignment")) {
    auto a = GetInt("general.alignment");
    if (!a.ok()) return a.status();
    if (*a <= 0 || (*a & (*a - 1)) != 0) {
      return absl::DataLossError(
          absl::StrCat(path, ": general.alignment ", *a, " is not a power of two"));
    }
    alignment = static_cast<uint64_t>(*a);
  }

  for (uint64_t i = 0; i < *tensor_count; ++i) {
    GgufTensorInfo info;
    auto name = cursor.ReadString("tensor name");
    if (!name.ok()) return name.status();
    info.name = std::move(*name);
    auto n_dims = cursor.Read<uint32_t>("tensor rank");
    if (!n_dims.ok()) return n_dims.status();
    if (*n_dims == 0 || *n_dims > kMaxDims) {
      return absl::DataLossError(absl::StrCat(path, ": tensor ", info.name, ": rank ", *n_dims,
                                              " at offset ", cursor.offset()));
    }
    info.n_elements = 1;
    for (uint32_t d = 0; d < *n_dims; ++d) {
      auto dim = cursor.Read<uint64_t>("tensor dimension");
      if (!dim.ok()) return dim.status();
      // Divided, not multiplied, so the running product cannot wrap: at most 2^40 elements.
      if (*dim == 0 || *dim > kMaxTensorElements / info.n_elements) {
        return absl::DataLossError(absl::StrCat(path, ": tensor ", info.name, ": bad dimension ",
                                                *dim, " (over 2^40 elements in all)"));
      }
      info.dims.push_back(*dim);
      info.n_elements *= *dim;
    }
    auto type = cursor.Read<uint32_t>("tensor type");
    if (!type.ok()) return type.status();
    info.type = *type;
    auto offset = cursor.Read<uint64_t>("tensor offset");
    if (!offset.ok()) return offset.status();
    if (*offset % alignment != 0) {
      return absl::DataLossError(absl::StrCat(path, ": tensor ", info.name, ": data offset ",
                                              *offset, " is not a multiple of general.alignment ",
                                              alignment));
    }
    info.offset = *offset;  // relative to the data section for now
    if (tensor_index_.count(info.name)) {
      return absl::DataLossError(absl::StrCat(path, ": tensor ", info.name, " appears twice"));
    }
    tensor_index_[info.name] = tensors_.size();
    tensors_.push_back(std::move(info));
  }

  // The data section starts at the next multiple of the alignment (computed without overflow);
  // each tensor's bytes must lie inside it and no two tensors may share bytes.
  const uint64_t header_end = cursor.offset();
  const uint64_t data_start = header_end + (alignment - header_end % alignment) % alignment;
  const uint64_t data_size = data_start <= file_->size() ? file_->size() - data_start : 0;
  std::vector<ByteRange> ranges;
  for (GgufTensorInfo& info : tensors_) {
    const uint64_t relative = info.offset;
    if (relative > data_size) {
      return absl::DataLossError(absl::StrCat(path, ": tensor ", info.name, ": data offset ",
                                              relative, " is past the end of the data section (",
                                              data_size, " bytes); the file is truncated"));
    }
    info.offset = data_start + relative;  // cannot wrap: both lie within the file
    auto type = LookupGgmlType(info.type);
    if (!type) continue;  // reported when someone reads it
    if (info.dims[0] % type->block_elements != 0) {
      return absl::DataLossError(absl::StrCat(path, ": tensor ", info.name, ": row of ",
                                              info.dims[0], " is not a multiple of ", type->name,
                                              "'s block of ", type->block_elements));
    }
    info.n_bytes = info.n_elements / type->block_elements * type->block_bytes;  // < 2^49
    if (info.n_bytes > data_size - relative) {
      return absl::DataLossError(absl::StrCat(path, ": tensor ", info.name, " (", type->name, ", ",
                                              info.n_bytes, " bytes at offset ", info.offset,
                                              ") runs past the end of the file (", file_->size(),
                                              " bytes); the file is truncated"));
    }
    ranges.push_back({info.offset, info.n_bytes, static_cast<size_t>(&info - tensors_.data())});
  }
  if (auto pair = FirstOverlap(std::move(ranges))) {
    const GgufTensorInfo& before = tensors_[pair->first];
    const GgufTensorInfo& after = tensors_[pair->second];
    return absl::DataLossError(absl::StrCat(path, ": tensors ", before.name, " (", before.n_bytes,
                                            " bytes at offset ", before.offset, ") and ",
                                            after.name, " (at offset ", after.offset, ") overlap"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> GgufReader::GetString(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) return absl::NotFoundError(absl::StrCat(path(), ": no key ", key));
  if (auto* s = std::get_if<std::string>(&it->second.value)) return *s;
  return absl::InvalidArgumentError(absl::StrCat(path(), ": key ", key, " is not a string"));
}

absl::StatusOr<int64_t> GgufReader::GetInt(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) return absl::NotFoundError(absl::StrCat(path(), ": no key ", key));
  if (auto* u = std::get_if<uint64_t>(&it->second.value)) return static_cast<int64_t>(*u);
  if (auto* i = std::get_if<int64_t>(&it->second.value)) return *i;
  return absl::InvalidArgumentError(absl::StrCat(path(), ": key ", key, " is not an integer"));
}

absl::StatusOr<double> GgufReader::GetFloat(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) return absl::NotFoundError(absl::StrCat(path(), ": no key ", key));
  if (auto* d = std::get_if<double>(&it->second.value)) return *d;
  if (auto i = GetInt(key); i.ok()) return static_cast<double>(*i);
  return absl::InvalidArgumentError(absl::StrCat(path(), ": key ", key, " is not a number"));
}

absl::StatusOr<bool> GgufReader::GetBool(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) return absl::NotFoundError(absl::StrCat(path(), ": no key ", key));
  if (auto* b = std::get_if<bool>(&it->second.value)) return *b;
  return absl::InvalidArgumentError(absl::StrCat(path(), ": key ", key, " is not a bool"));
}

absl::StatusOr<std::vector<std::string>> GgufReader::GetStringArray(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) return absl::NotFoundError(absl::StrCat(path(), ": no key ", key));
  const auto* items = std::get_if<GgufValue::Array>(&it->second.value);
  std::vector<std::string> out;
  if (items != nullptr) {
    out.reserve(items->size());
    for (const GgufValue& item : *items) {
      const auto* s = std::get_if<std::string>(&item.value);
      if (s == nullptr) break;
      out.push_back(*s);
    }
    if (out.size() == items->size()) return out;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(path(), ": key ", key, " is not an array of strings"));
}

absl::StatusOr<std::vector<int64_t>> GgufReader::GetIntArray(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) return absl::NotFoundError(absl::StrCat(path(), ": no key ", key));
  const auto* items = std::get_if<GgufValue::Array>(&it->second.value);
  std::vector<int64_t> out;
  if (items != nullptr) {
    out.reserve(items->size());
    for (const GgufValue& item : *items) {
      if (auto* u = std::get_if<uint64_t>(&item.value)) {
        out.push_back(static_cast<int64_t>(*u));
      } else if (auto* i = std::get_if<int64_t>(&item.value)) {
        out.push_back(*i);
      } else {
        break;
      }
    }
    if (out.size() == items->size()) return out;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(path(), ": key ", key, " is not an array of integers"));
}

absl::StatusOr<std::vector<float>> GgufReader::GetFloatArray(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) return absl::NotFoundError(absl::StrCat(path(), ": no key ", key));
  const auto* items = std::get_if<GgufValue::Array>(&it->second.value);
  std::vector<float> out;
  if (items != nullptr) {
    for (const GgufValue& item : *items) {
      const auto* d = std::get_if<double>(&item.value);
      if (d == nullptr) break;
      out.push_back(static_cast<float>(*d));
    }
    if (out.size() == items->size()) return out;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(path(), ": key ", key, " is not an array of floats"));
}

const GgufTensorInfo* GgufReader::FindTensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

absl::Status GgufReader::ReadTensorAsFloat(const GgufTensorInfo& tensor, float* dst) const {
  if (!LookupGgmlType(tensor.type)) {
    return absl::UnimplementedError(absl::StrCat(path(), ": tensor ", tensor.name, " is stored as ",
                                                 GgmlTypeName(tensor.type),
                                                 ", which schism cannot dequantize"));
  }
  auto status = DequantizeToFloat(static_cast<GgmlType>(tensor.type), file_->data() + tensor.offset,
                                  tensor.n_elements, dst);
  if (!status.ok()) {
    return absl::Status(status.code(),
                        absl::StrCat(path(), ": tensor ", tensor.name, ": ", status.message()));
  }
  return absl::OkStatus();
}

}  // namespace schism::formats
