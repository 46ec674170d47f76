#include "common/formats/gguf_reader.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/formats/ggml_types.h"
#include "tests/gguf_writer.h"
#include "tests/test_support.h"

namespace schism::formats {
namespace {

using testing_support::ReadFloats;
using testing_support::RunOracle;

std::vector<float> Dequantize(const GgufReader& reader, const std::string& name) {
  const GgufTensorInfo* info = reader.FindTensor(name);
  EXPECT_NE(info, nullptr) << name;
  if (info == nullptr) return {};
  std::vector<float> out(info->n_elements);
  auto status = reader.ReadTensorAsFloat(*info, out.data());
  EXPECT_TRUE(status.ok()) << status;
  return out;
}

void ExpectBitIdentical(const std::vector<float>& got, const std::vector<float>& want,
                        const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t mismatches = 0;
  for (size_t i = 0; i < got.size(); ++i) mismatches += std::memcmp(&got[i], &want[i], 4) != 0;
  EXPECT_EQ(mismatches, 0u) << what << ": first value " << got[0] << " vs " << want[0];
}

TEST(GgufReader, ReadsRealModelMetadataAndDirectory) {
  auto reader = GgufReader::Open(testing_support::RealModelPath());
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->version(), 3u);
  EXPECT_EQ(*(*reader)->GetString("general.architecture"), "llama");
  EXPECT_EQ(*(*reader)->GetInt("llama.block_count"), 30);
  EXPECT_FLOAT_EQ(*(*reader)->GetFloat("llama.rope.freq_base"), 100000.0);
  EXPECT_EQ((*reader)->GetStringArray("tokenizer.ggml.tokens")->size(), 49152u);
  EXPECT_EQ((*reader)->tensors().size(), 272u);
  const GgufTensorInfo* down = (*reader)->FindTensor("blk.0.ffn_down.weight");
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(down->dims, (std::vector<uint64_t>{1536, 576}));
  EXPECT_EQ(GgmlTypeName(down->type), "Q4_1");
  auto missing = (*reader)->GetInt("llama.no_such_key");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("llama.no_such_key"), std::string::npos);
}

TEST(GgufReader, DequantizesRealModelBitIdenticalToGgufPackage) {
  const std::string model = testing_support::RealModelPath();
  const std::string dir = testing_support::MakeTempDir("gguf_real");
  const std::vector<std::string> names = {"token_embd.weight", "blk.0.attn_q.weight",
                                          "blk.29.ffn_down.weight", "output_norm.weight"};
  std::vector<std::string> args = {"dequant", model, dir};
  args.insert(args.end(), names.begin(), names.end());
  std::string log;
  ASSERT_EQ(RunOracle("gguf_oracle.py", args, &log), 0) << log;
  auto reader = GgufReader::Open(model);
  ASSERT_TRUE(reader.ok()) << reader.status();
  for (const std::string& name : names) {
    ExpectBitIdentical(Dequantize(**reader, name), ReadFloats(dir + "/" + name + ".f32"), name);
  }
}

TEST(GgufReader, DequantizesEveryTypeBitIdenticalToGgufPackage) {
  const std::string dir = testing_support::MakeTempDir("gguf_synth");
  std::string log;
  ASSERT_EQ(RunOracle("gguf_oracle.py", {"synth", dir + "/synth.gguf", dir}, &log), 0) << log;
  auto reader = GgufReader::Open(dir + "/synth.gguf");
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ(*(*reader)->GetInt("test.answer"), 42);
  EXPECT_EQ(*(*reader)->GetString("test.greeting"), "héllo");
  EXPECT_EQ(*(*reader)->GetIntArray("test.list"), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(*(*reader)->GetFloat("test.pi"), 3.25);
  for (const char* type :
       {"Q4_0",    "Q4_1",   "Q5_0",   "Q5_1",    "Q8_0",  "Q2_K",  "Q3_K",  "Q4_K",  "Q5_K",
        "Q6_K",    "IQ4_NL", "IQ4_XS", "MXFP4",   "NVFP4", "TQ1_0", "TQ2_0", "IQ1_S", "IQ1_M",
        "IQ2_XXS", "IQ2_XS", "IQ2_S",  "IQ3_XXS", "IQ3_S", "F32",   "F16",   "BF16"}) {
    ExpectBitIdentical(Dequantize(**reader, type), ReadFloats(dir + "/" + type + ".f32"), type);
  }
}

TEST(GgmlTypes, UnsupportedTypesAreNamedInErrors) {
  EXPECT_EQ(GgmlTypeName(10), "Q2_K");
  EXPECT_EQ(GgmlTypeName(23), "IQ4_XS");
  EXPECT_EQ(GgmlTypeName(6), "Q5_0");
  EXPECT_EQ(GgmlTypeName(77), "type 77");
  float out[256];
  const uint8_t zeros[256] = {};
  const absl::Status s = DequantizeToFloat(static_cast<GgmlType>(28), zeros, 32, out);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(s.message(), "cannot dequantize F64");
}

std::string WriteTruncatedCopy(const std::string& source, size_t bytes, const std::string& name) {
  const std::string path = testing_support::MakeTempDir(name) + "/model.gguf";
  std::ifstream in(source, std::ios::binary);
  std::string data(bytes, '\0');
  in.read(data.data(), static_cast<std::streamsize>(bytes));
  std::ofstream(path, std::ios::binary).write(data.data(), static_cast<std::streamsize>(bytes));
  return path;
}

TEST(GgufReader, TruncatedFileNamesTheTensorAndOffset) {
  const std::string model = testing_support::RealModelPath();
  const size_t size = std::filesystem::file_size(model);
  auto truncated = GgufReader::Open(WriteTruncatedCopy(model, size - 1000, "gguf_trunc_data"));
  ASSERT_FALSE(truncated.ok());
  EXPECT_NE(truncated.status().message().find("truncated"), std::string::npos);
  EXPECT_NE(truncated.status().message().find("tensor "), std::string::npos) << truncated.status();

  auto header_cut = GgufReader::Open(WriteTruncatedCopy(model, 100000, "gguf_trunc_header"));
  ASSERT_FALSE(header_cut.ok());
  EXPECT_NE(header_cut.status().message().find("truncated at offset"), std::string::npos)
      << header_cut.status();
}

TEST(GgufReader, RejectsNonGgufAndMissingFiles) {
  const std::string path = testing_support::MakeTempDir("gguf_bad") + "/bad.gguf";
  std::ofstream(path) << "this is not a model file at all";
  auto bad = GgufReader::Open(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("not a GGUF file"), std::string::npos);
  auto missing = GgufReader::Open("/nonexistent/model.gguf");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

// A GGUF v3 with float32 tensors {name, dims, data offset} and `data_bytes` bytes of data after
// the header; `extra_key` adds a second metadata entry of that name.
struct TinyTensor {
  std::string name;
  std::vector<uint64_t> dims;
  uint64_t offset;
};
std::string TinyGguf(const std::string& name, const std::vector<TinyTensor>& tensors,
                     size_t data_bytes, const std::string& extra_key = "") {
  testing_support::GgufWriter gguf;
  gguf.String("general.architecture", "llama");
  if (!extra_key.empty()) gguf.String(extra_key, "again");
  for (const TinyTensor& t : tensors) gguf.Tensor(t.name, t.dims, t.offset);
  return gguf.Write(testing_support::MakeTempDir(name) + "/model.gguf", data_bytes);
}

std::string OpenError(const std::string& path) {
  auto reader = GgufReader::Open(path);
  return reader.ok() ? "accepted" : std::string(reader.status().message());
}

// Tensor directories that lie about where the data is: misaligned, overlapping, beyond the file
// (also through an offset that would wrap around 2^64), or with more elements than 64 bits count.
// Each is refused with a message that names the tensor; a well-formed file opens.
TEST(GgufReader, TensorDataMustBeAlignedInsideTheFileAndNotOverlap) {
  auto good = GgufReader::Open(TinyGguf("gguf_good", {{"a", {8}, 0}, {"b", {8}, 32}}, 64));
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_EQ((*good)->tensors().size(), 2u);

  EXPECT_NE(OpenError(TinyGguf("gguf_misaligned", {{"a", {8}, 4}}, 64))
                .find("tensor a: data offset 4 is not a multiple of general.alignment 32"),
            std::string::npos);
  const std::string overlap =
      OpenError(TinyGguf("gguf_overlap", {{"a", {16}, 0}, {"b", {8}, 32}}, 96));
  EXPECT_NE(overlap.find("tensors a (64 bytes at offset"), std::string::npos) << overlap;
  EXPECT_NE(overlap.find("and b (at offset"), std::string::npos) << overlap;
  EXPECT_NE(overlap.find("overlap"), std::string::npos) << overlap;
  const std::string wrap =
      OpenError(TinyGguf("gguf_wrap", {{"a", {8}, 0xFFFFFFFFFFFFFFE0ull}}, 64));
  EXPECT_NE(wrap.find("tensor a: data offset 18446744073709551584 is past the end of the data "
                      "section (64 bytes)"),
            std::string::npos)
      << wrap;
  const std::string past = OpenError(TinyGguf("gguf_past", {{"a", {32}, 0}}, 64));
  EXPECT_NE(past.find("tensor a (F32, 128 bytes"), std::string::npos) << past;
  EXPECT_NE(past.find("truncated"), std::string::npos) << past;
  const std::string huge =
      OpenError(TinyGguf("gguf_huge", {{"a", {uint64_t{1} << 40, uint64_t{1} << 24}, 0}}, 64));
  EXPECT_NE(huge.find("tensor a: bad dimension 16777216 (over 2^40 elements in all)"),
            std::string::npos)
      << huge;
  EXPECT_NE(OpenError(TinyGguf("gguf_dup_key", {}, 0, "general.architecture"))
                .find("metadata key general.architecture appears twice"),
            std::string::npos);
}

}  // namespace
}  // namespace schism::formats
