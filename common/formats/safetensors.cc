#include "common/formats/safetensors.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/formats/byte_ranges.h"
#include "common/formats/ggml_types.h"

namespace schism::formats {
namespace {

struct DtypeInfo {
  SafetensorsDtype dtype;
  const char* name;
  size_t size;
};

constexpr DtypeInfo kDtypes[] = {
    {SafetensorsDtype::kF64, "F64", 8},        {SafetensorsDtype::kF32, "F32", 4},
    {SafetensorsDtype::kF16, "F16", 2},        {SafetensorsDtype::kBF16, "BF16", 2},
    {SafetensorsDtype::kI64, "I64", 8},        {SafetensorsDtype::kI32, "I32", 4},
    {SafetensorsDtype::kI16, "I16", 2},        {SafetensorsDtype::kI8, "I8", 1},
    {SafetensorsDtype::kU8, "U8", 1},          {SafetensorsDtype::kBool, "BOOL", 1},
    {SafetensorsDtype::kF8E4M3, "F8_E4M3", 1}, {SafetensorsDtype::kF8E5M2, "F8_E5M2", 1},
    {SafetensorsDtype::kU16, "U16", 2},        {SafetensorsDtype::kU32, "U32", 4},
    {SafetensorsDtype::kU64, "U64", 8},
};

// Header sizes beyond this are corruption, not models (the format's own limit is 100 MB).
constexpr uint64_t kMaxHeaderBytes = 100 << 20;

}  // namespace

std::optional<SafetensorsDtype> ParseSafetensorsDtype(const std::string& name) {
  for (const auto& d : kDtypes) {
    if (name == d.name) return d.dtype;
  }
  return std::nullopt;
}

const char* SafetensorsDtypeName(SafetensorsDtype dtype) {
  for (const auto& d : kDtypes) {
    if (d.dtype == dtype) return d.name;
  }
  return "?";
}

size_t SafetensorsDtypeSize(SafetensorsDtype dtype) {
  for (const auto& d : kDtypes) {
    if (d.dtype == dtype) return d.size;
  }
  return 0;
}

int64_t SafetensorsTensor::n_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  auto mapped = MappedFile::Open(path);
  if (!mapped.ok()) return mapped.status();
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile(std::move(*mapped)));
  const MappedFile& m = *file->file_;
  if (m.size() < 8) {
    return absl::DataLossError(absl::StrCat(path, ": truncated: ", m.size(),
                                            " bytes, shorter than the 8-byte header length"));
  }
  uint64_t header_len;
  std::memcpy(&header_len, m.data(), 8);
  if (header_len > kMaxHeaderBytes || header_len > m.size() - 8) {
    return absl::DataLossError(absl::StrCat(path, ": header length ", header_len,
                                            " exceeds the file (", m.size(),
                                            " bytes); truncated or not safetensors"));
  }
  auto header = nlohmann::json::parse(m.data() + 8, m.data() + 8 + header_len, nullptr, false);
  if (header.is_discarded() || !header.is_object()) {
    return absl::DataLossError(absl::StrCat(path, ": header is not a JSON object"));
  }
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = m.size() - data_start;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) return absl::DataLossError(absl::StrCat(path, ": bad __metadata__"));
      for (auto mit = it->begin(); mit != it->end(); ++mit) {
        if (mit->is_string()) file->metadata_[mit.key()] = mit->get<std::string>();
      }
      continue;
    }
    const std::string where = absl::StrCat(path, ": tensor ", it.key());
    const auto& entry = *it;
    if (!entry.is_object() || !entry.contains("dtype") || !entry["dtype"].is_string() ||
        !entry.contains("shape") || !entry["shape"].is_array() || !entry.contains("data_offsets") ||
        !entry["data_offsets"].is_array() || entry["data_offsets"].size() != 2) {
      return absl::DataLossError(absl::StrCat(where, ": malformed header entry"));
    }
    SafetensorsTensor t;
    t.name = it.key();
    auto dtype = ParseSafetensorsDtype(entry["dtype"].get<std::string>());
    if (!dtype) {
      return absl::UnimplementedError(
          absl::StrCat(where, ": unknown dtype ", entry["dtype"].get<std::string>()));
    }
    t.dtype = *dtype;
    // At most 2^40 elements, checked dimension by dimension so the product cannot overflow.
    uint64_t elements = 1;
    for (const auto& d : entry["shape"]) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > kMaxTensorElements ||
          (d.get<uint64_t>() > 0 && elements > kMaxTensorElements / d.get<uint64_t>())) {
        return absl::DataLossError(
            absl::StrCat(where, ": bad shape ", entry["shape"].dump(), " (over 2^40 elements)"));
      }
      elements *= d.get<uint64_t>();
      t.shape.push_back(static_cast<int64_t>(d.get<uint64_t>()));
    }
    const auto& offsets = entry["data_offsets"];
    if (!offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned()) {
      return absl::DataLossError(absl::StrCat(where, ": bad data_offsets"));
    }
    const uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
    const uint64_t expected = static_cast<uint64_t>(t.n_elements()) * SafetensorsDtypeSize(t.dtype);
    if (end < begin || end - begin != expected) {
      return absl::DataLossError(absl::StrCat(where, ": data_offsets [", begin, ", ", end,
                                              ") hold ", end - begin,
                                              " bytes, shape and dtype need ", expected));
    }
    if (end > data_size) {
      return absl::DataLossError(absl::StrCat(where, ": data [", begin, ", ", end,
                                              ") runs past the end of the file at data offset ",
                                              data_size, "; the file is truncated"));
    }
    t.data = m.data() + data_start + begin;
    t.n_bytes = end - begin;
    file->index_[t.name] = file->tensors_.size();
    file->tensors_.push_back(std::move(t));
  }
  // No two tensors may share bytes (the format lays them out back to back).
  std::vector<ByteRange> ranges;
  for (size_t i = 0; i < file->tensors_.size(); ++i) {
    const SafetensorsTensor& t = file->tensors_[i];
    ranges.push_back({static_cast<uint64_t>(t.data - m.data()), t.n_bytes, i});
  }
  if (auto pair = FirstOverlap(std::move(ranges))) {
    return absl::DataLossError(absl::StrCat(path, ": tensors ", file->tensors_[pair->first].name,
                                            " and ", file->tensors_[pair->second].name,
                                            " overlap in the data section"));
  }
  return file;
}

const SafetensorsTensor* SafetensorsFile::Find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

absl::StatusOr<std::unique_ptr<SafetensorsModel>> SafetensorsModel::Open(
    const std::string& folder) {
  namespace fs = std::filesystem;
  auto model = std::make_unique<SafetensorsModel>();
  const fs::path index_path = fs::path(folder) / "model.safetensors.index.json";
  std::vector<std::string> files;
  if (fs::exists(index_path)) {
    std::ifstream in(index_path);
    auto index = nlohmann::json::parse(in, nullptr, false);
    if (index.is_discarded() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
      return absl::DataLossError(absl::StrCat(index_path.string(), ": no weight_map object"));
    }
    std::set<std::string> unique;
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      if (!it->is_string())
        return absl::DataLossError(absl::StrCat(index_path.string(), ": bad entry ", it.key()));
      if (unique.insert(it->get<std::string>()).second) files.push_back(it->get<std::string>());
    }
    for (const std::string& f : files) {
      // A shard is a file of the folder: an absolute or ../ name would read elsewhere.
      if (f.empty() || f == "." || f == ".." || f.find('/') != std::string::npos ||
          f.find('\0') != std::string::npos) {
        return absl::DataLossError(absl::StrCat(index_path.string(), ": shard name \"", f,
                                                "\" is not a file of the folder"));
      }
      auto shard = SafetensorsFile::Open((fs::path(folder) / f).string());
      if (!shard.ok()) return shard.status();
      model->shards_.push_back(std::move(*shard));
    }
    for (const auto& shard : model->shards_) {
      for (const auto& t : shard->tensors()) model->tensors_[t.name] = &t;
    }
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      if (!model->tensors_.count(it.key())) {
        return absl::DataLossError(absl::StrCat(index_path.string(), ": tensor ", it.key(),
                                                " is not in ", it->get<std::string>()));
      }
    }
    return model;
  }
  const fs::path single = fs::path(folder) / "model.safetensors";
  if (!fs::exists(single)) {
    return absl::NotFoundError(absl::StrCat(folder,
                                            ": neither model.safetensors nor "
                                            "model.safetensors.index.json"));
  }
  auto shard = SafetensorsFile::Open(single.string());
  if (!shard.ok()) return shard.status();
  model->shards_.push_back(std::move(*shard));
  for (const auto& t : model->shards_[0]->tensors()) model->tensors_[t.name] = &t;
  return model;
}

const SafetensorsTensor* SafetensorsModel::Find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : it->second;
}

std::vector<std::string> SafetensorsModel::TensorNames() const {
  std::vector<std::string> names;
  for (const auto& [name, _] : tensors_) names.push_back(name);
  return names;
}

absl::Status ReadSafetensorAsFloat(const SafetensorsTensor& t, float* dst) {
  const int64_t n = t.n_elements();
  switch (t.dtype) {
    case SafetensorsDtype::kF32:
      std::memcpy(dst, t.data, n * sizeof(float));
      return absl::OkStatus();
    case SafetensorsDtype::kF16:
      return DequantizeToFloat(GgmlType::kF16, t.data, n, dst);
    case SafetensorsDtype::kBF16:
      return DequantizeToFloat(GgmlType::kBF16, t.data, n, dst);
    case SafetensorsDtype::kF64:
      for (int64_t i = 0; i < n; ++i) {
        double v;
        std::memcpy(&v, t.data + 8 * i, 8);
        dst[i] = static_cast<float>(v);
      }
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError(absl::StrCat("tensor ", t.name, " has dtype ",
                                                     SafetensorsDtypeName(t.dtype),
                                                     ", not a floating-point weight"));
  }
}

SafetensorsWriter::SafetensorsWriter(std::string folder, uint64_t max_shard_bytes,
                                     std::map<std::string, std::string> metadata,
                                     std::string base_name)
    : folder_(std::move(folder)),
      max_shard_bytes_(max_shard_bytes == 0 ? UINT64_MAX : max_shard_bytes),
      base_name_(std::move(base_name)),
      metadata_(std::move(metadata)) {}

SafetensorsWriter::~SafetensorsWriter() {
  if (data_ != nullptr) std::fclose(data_);
  if (!finished_) {
    for (const Shard& s : shards_) std::filesystem::remove(s.data_path);
  }
}

absl::Status SafetensorsWriter::CloseData() {
  if (data_ == nullptr) return absl::OkStatus();
  const bool ok = std::fflush(data_) == 0 && ::fsync(fileno(data_)) == 0;
  std::fclose(data_);
  data_ = nullptr;
  if (!ok) return absl::DataLossError(absl::StrCat(shards_.back().data_path, ": write failed"));
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::StartShard() {
  if (auto s = CloseData(); !s.ok()) return s;
  std::error_code ec;
  std::filesystem::create_directories(folder_, ec);
  Shard shard;
  shard.data_path = absl::StrCat(folder_, "/.shard-", shards_.size() + 1, ".data.tmp");
  data_ = std::fopen(shard.data_path.c_str(), "wb");
  if (data_ == nullptr) {
    return absl::PermissionDeniedError(absl::StrCat(shard.data_path, ": cannot create"));
  }
  shards_.push_back(std::move(shard));
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Add(const std::string& name, SafetensorsDtype dtype,
                                    const std::vector<int64_t>& shape, const void* data,
                                    size_t n_bytes) {
  if (finished_) return absl::FailedPreconditionError("SafetensorsWriter already finished");
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  if (static_cast<uint64_t>(n) * SafetensorsDtypeSize(dtype) != n_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor ", name, ": ", n_bytes, " bytes do not match its shape and dtype"));
  }
  for (const Shard& s : shards_) {
    for (const Entry& e : s.entries) {
      if (e.name == name)
        return absl::AlreadyExistsError(absl::StrCat("tensor ", name, " added twice"));
    }
  }
  if (shards_.empty() ||
      (shards_.back().bytes > 0 && shards_.back().bytes + n_bytes > max_shard_bytes_)) {
    if (auto s = StartShard(); !s.ok()) return s;
  }
  Shard& shard = shards_.back();
  if (n_bytes > 0 && std::fwrite(data, 1, n_bytes, data_) != n_bytes) {
    return absl::DataLossError(absl::StrCat(shard.data_path, ": write of tensor ", name,
                                            " failed: ", std::strerror(errno)));
  }
  shard.entries.push_back({name, dtype, shape, shard.bytes, shard.bytes + n_bytes});
  shard.bytes += n_bytes;
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Finish() {
  if (finished_) return absl::OkStatus();
  if (shards_.empty()) {
    if (auto s = StartShard(); !s.ok()) return s;
  }
  if (auto s = CloseData(); !s.ok()) return s;
  const size_t n = shards_.size();
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  uint64_t total = 0;
  for (size_t i = 0; i < n; ++i) {
    const Shard& shard = shards_[i];
    const std::string file_name =
        n == 1 ? absl::StrCat(base_name_, ".safetensors")
               : absl::StrCat(base_name_, "-", absl::Dec(i + 1, absl::kZeroPad5), "-of-",
                              absl::Dec(n, absl::kZeroPad5), ".safetensors");
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata_.empty()) header["__metadata__"] = metadata_;
    for (const Entry& e : shard.entries) {
      header[e.name] = {{"dtype", SafetensorsDtypeName(e.dtype)},
                        {"shape", e.shape},
                        {"data_offsets", {e.begin, e.end}}};
      weight_map[e.name] = file_name;
    }
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');  // keeps tensor data 8-byte aligned
    const std::string final_path = absl::StrCat(folder_, "/", file_name);
    const std::string tmp_path = final_path + ".tmp";
    {
      std::ofstream out(tmp_path, std::ios::binary);
      const uint64_t len = text.size();
      out.write(reinterpret_cast<const char*>(&len), 8);
      out.write(text.data(), static_cast<std::streamsize>(text.size()));
      std::ifstream in(shard.data_path, std::ios::binary);
      out << in.rdbuf();
      out.flush();
      if (!out) return absl::DataLossError(absl::StrCat(tmp_path, ": write failed"));
    }
    std::error_code ec;
    std::filesystem::rename(tmp_path, final_path, ec);
    if (ec) return absl::DataLossError(absl::StrCat(final_path, ": rename failed: ", ec.message()));
    std::filesystem::remove(shard.data_path);
    written_.push_back(final_path);
    total += shard.bytes;
  }
  if (n > 1) {
    nlohmann::ordered_json index = {{"metadata", {{"total_size", total}}},
                                    {"weight_map", weight_map}};
    const std::string path = absl::StrCat(folder_, "/", base_name_, ".safetensors.index.json");
    std::ofstream(path) << index.dump(2) << "\n";
    written_.push_back(path);
  }
  finished_ = true;
  return absl::OkStatus();
}

}  // namespace schism::formats
