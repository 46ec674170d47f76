#include "common/formats/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "tests/test_support.h"

namespace schism::formats {
namespace {

using testing_support::MakeTempDir;
using testing_support::ReadFile;
using testing_support::RunOracle;

std::string Bytes(const SafetensorsTensor& t) {
  return std::string(reinterpret_cast<const char*>(t.data), t.n_bytes);
}

TEST(SafetensorsFile, ReadsEveryDtypeWrittenByTheSafetensorsPackage) {
  const std::string dir = MakeTempDir("st_read");
  std::string log;
  ASSERT_EQ(RunOracle("safetensors_oracle.py", {"write", dir}, &log), 0) << log;
  auto file = SafetensorsFile::Open(dir + "/fixture.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->metadata().at("who"), "oracle");
  const std::map<std::string, std::pair<SafetensorsDtype, std::vector<int64_t>>> expected = {
      {"f64", {SafetensorsDtype::kF64, {3, 4}}},  {"f32", {SafetensorsDtype::kF32, {2, 3, 4}}},
      {"f16", {SafetensorsDtype::kF16, {5}}},     {"i64", {SafetensorsDtype::kI64, {4}}},
      {"i32", {SafetensorsDtype::kI32, {2, 2}}},  {"i16", {SafetensorsDtype::kI16, {3}}},
      {"i8", {SafetensorsDtype::kI8, {7}}},       {"u8", {SafetensorsDtype::kU8, {6}}},
      {"bool", {SafetensorsDtype::kBool, {5}}},   {"scalar", {SafetensorsDtype::kF32, {}}},
      {"empty", {SafetensorsDtype::kF32, {0, 4}}}};
  ASSERT_EQ((*file)->tensors().size(), expected.size());
  for (const auto& [name, dtype_shape] : expected) {
    const SafetensorsTensor* t = (*file)->Find(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->dtype, dtype_shape.first) << name;
    EXPECT_EQ(t->shape, dtype_shape.second) << name;
    EXPECT_EQ(Bytes(*t), ReadFile(dir + "/" + name + ".bin")) << name;
  }
  std::vector<float> f16(5);
  ASSERT_TRUE(ReadSafetensorAsFloat(*(*file)->Find("f16"), f16.data()).ok());
  EXPECT_FALSE(ReadSafetensorAsFloat(*(*file)->Find("i8"), f16.data()).ok());
}

TEST(SafetensorsWriter, ShardsBySizeAndTheSafetensorsPackageReadsItBack) {
  const std::string dir = MakeTempDir("st_write");
  std::mt19937 rng(3);
  std::map<std::string, std::string> written;
  {
    SafetensorsWriter writer(dir + "/model", /*max_shard_bytes=*/10000);
    for (int i = 0; i < 7; ++i) {
      const int64_t rows = 10 + 7 * i;
      std::vector<float> data(rows * 32);
      for (float& v : data) v = std::uniform_real_distribution<float>(-1, 1)(rng);
      const std::string name = "layers." + std::to_string(i) + ".weight";
      ASSERT_TRUE(
          writer.Add(name, SafetensorsDtype::kF32, {rows, 32}, data.data(), data.size() * 4).ok());
      written[name] = std::string(reinterpret_cast<char*>(data.data()), data.size() * 4);
    }
    std::vector<uint16_t> half(100, 0x3C00);  // 1.0 in IEEE half
    ASSERT_TRUE(writer.Add("norm", SafetensorsDtype::kF16, {100}, half.data(), 200).ok());
    written["norm"] = std::string(reinterpret_cast<char*>(half.data()), 200);
    EXPECT_EQ(writer.Add("norm", SafetensorsDtype::kF16, {100}, half.data(), 200).code(),
              absl::StatusCode::kAlreadyExists);
    EXPECT_FALSE(writer.Add("bad", SafetensorsDtype::kF32, {3}, half.data(), 10).ok());
    ASSERT_TRUE(writer.Finish().ok());
    EXPECT_GT(writer.written_files().size(), 3u);  // several shards plus the index
  }
  for (const auto& entry : std::filesystem::directory_iterator(dir + "/model")) {
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos) << entry.path();
  }
  const std::string out = MakeTempDir("st_write_check");
  std::string log;
  ASSERT_EQ(RunOracle("safetensors_oracle.py", {"read", dir + "/model", out}, &log), 0) << log;
  auto shapes = nlohmann::json::parse(ReadFile(out + "/shapes.json"));
  EXPECT_EQ(shapes.size(), written.size());
  for (const auto& [name, bytes] : written)
    EXPECT_EQ(ReadFile(out + "/" + name + ".bin"), bytes) << name;

  auto model = SafetensorsModel::Open(dir + "/model");
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_GT(model.value()->shards().size(), 1u);
  for (const auto& [name, bytes] : written) {
    ASSERT_NE((*model)->Find(name), nullptr) << name;
    EXPECT_EQ(Bytes(*(*model)->Find(name)), bytes) << name;
  }
}

TEST(SafetensorsFile, TruncatedAndCorruptFilesNameTheProblem) {
  const std::string dir = MakeTempDir("st_bad");
  std::string log;
  ASSERT_EQ(RunOracle("safetensors_oracle.py", {"write", dir}, &log), 0) << log;
  const std::string good = ReadFile(dir + "/fixture.safetensors");
  std::ofstream(dir + "/cut.safetensors", std::ios::binary) << good.substr(0, good.size() - 20);
  auto cut = SafetensorsFile::Open(dir + "/cut.safetensors");
  ASSERT_FALSE(cut.ok());
  EXPECT_NE(cut.status().message().find("truncated"), std::string::npos) << cut.status();
  EXPECT_NE(cut.status().message().find("tensor "), std::string::npos) << cut.status();

  std::ofstream(dir + "/tiny.safetensors", std::ios::binary) << "abc";
  EXPECT_FALSE(SafetensorsFile::Open(dir + "/tiny.safetensors").ok());
  std::string garbage = good;
  garbage[10] = '\x01';  // inside the JSON header
  std::ofstream(dir + "/garbage.safetensors", std::ios::binary) << garbage;
  auto bad = SafetensorsFile::Open(dir + "/garbage.safetensors");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("garbage.safetensors"), std::string::npos);
}

// A safetensors file with `header` (JSON) and `data_bytes` zero bytes of data.
std::string WriteSafetensors(const std::string& path, const std::string& header,
                             size_t data_bytes) {
  std::string b;
  const uint64_t n = header.size();
  b.append(reinterpret_cast<const char*>(&n), sizeof(n));
  b += header;
  b.append(data_bytes, '\0');
  std::ofstream(path, std::ios::binary) << b;
  return path;
}

std::string OpenError(const std::string& path) {
  auto file = SafetensorsFile::Open(path);
  return file.ok() ? "accepted" : std::string(file.status().message());
}

// Headers that lie: tensors sharing bytes, a shape whose element count wraps 64 bits (it used to
// pass with empty data_offsets), and an index naming shards outside its folder.
TEST(SafetensorsFile, OverlappingTensorsWrappingShapesAndEscapingShardsAreRefused) {
  const std::string dir = MakeTempDir("st_lies");
  EXPECT_EQ(OpenError(WriteSafetensors(dir + "/ok.safetensors",
                                       R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                                       16)),
            "accepted");
  const std::string overlap =
      OpenError(WriteSafetensors(dir + "/overlap.safetensors",
                                 R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                                 R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                                 16));
  EXPECT_NE(overlap.find("tensors a and b overlap in the data section"), std::string::npos)
      << overlap;
  const std::string wrap = OpenError(WriteSafetensors(
      dir + "/wrap.safetensors",
      R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", 0));
  EXPECT_NE(wrap.find("bad shape [4294967296,4294967296] (over 2^40 elements)"), std::string::npos)
      << wrap;

  const std::string folder = MakeTempDir("st_escape");
  WriteSafetensors(folder + "/model-1.safetensors",
                   R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8);
  for (const std::string shard : {"/etc/passwd", "../model-1.safetensors", ".."}) {
    std::ofstream(folder + "/model.safetensors.index.json")
        << R"({"weight_map":{"a":")" << shard << R"("}})";
    auto model = SafetensorsModel::Open(folder);
    ASSERT_FALSE(model.ok()) << shard;
    EXPECT_NE(
        model.status().message().find("shard name \"" + shard + "\" is not a file of the folder"),
        std::string::npos)
        << model.status();
  }
  std::ofstream(folder + "/model.safetensors.index.json")
      << R"({"weight_map":{"a":"model-1.safetensors"}})";
  auto model = SafetensorsModel::Open(folder);
  ASSERT_TRUE(model.ok()) << model.status();
}

}  // namespace
}  // namespace schism::formats
