// A safetensors file: the JSON header, dtypes, shapes against byte ranges; every tensor small
// enough is read as float32.
#include <cstdint>
#include <vector>

#include "common/formats/safetensors.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = schism::formats::SafetensorsFile::Open(
      schism::fuzz::WriteInput(data, size, "model.safetensors"));
  if (!file.ok()) return 0;
  for (const auto& tensor : (*file)->tensors()) {
    if (tensor.n_elements() <= 0 || tensor.n_elements() > (1 << 20)) continue;
    std::vector<float> out(static_cast<size_t>(tensor.n_elements()));
    (void)schism::formats::ReadSafetensorAsFloat(tensor, out.data());
  }
  return 0;
}
