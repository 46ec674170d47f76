// model.safetensors.index.json beside two fixed shards (SafetensorsModel::Open): the weight map
// may name missing tensors, shards outside the folder or anything else; every tensor an accepted
// folder lists is found and readable.
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "common/formats/safetensors.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

// A shard holding one float32 tensor of 4 elements named `tensor`.
std::string Shard(const std::string& tensor) {
  const std::string header =
      "{\"" + tensor + "\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
  std::string b(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return b + header + std::string(16, '\0');
}

// The folder of the index: the two shards are written there once per process.
const std::string& Folder() {
  static const std::string folder = [] {
    for (const auto& [name, tensor] : {std::pair{"model-00001-of-00002.safetensors", "a"},
                                       std::pair{"model-00002-of-00002.safetensors", "b"}}) {
      const std::string bytes = Shard(tensor);
      schism::fuzz::WriteInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), name);
    }
    const std::string any = schism::fuzz::WriteInput(nullptr, 0, "placeholder");
    return std::filesystem::path(any).parent_path().string();
  }();
  return folder;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& folder = Folder();
  schism::fuzz::WriteInput(data, size, "model.safetensors.index.json");
  auto model = schism::formats::SafetensorsModel::Open(folder);
  if (!model.ok()) return 0;
  for (const std::string& name : (*model)->TensorNames()) {
    const auto* tensor = (*model)->Find(name);
    if (tensor == nullptr) std::abort();
    if (tensor->n_elements() <= 0 || tensor->n_elements() > 16) continue;
    std::vector<float> out(static_cast<size_t>(tensor->n_elements()));
    (void)schism::formats::ReadSafetensorAsFloat(*tensor, out.data());
  }
  return 0;
}
