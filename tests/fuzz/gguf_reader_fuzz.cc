// GGUF files: header, metadata, tensor directory, the tokenizer read from them, and dequantizing
// every tensor small enough to hold.
#include <cstdint>
#include <vector>

#include "common/formats/gguf_reader.h"
#include "common/tokenizer/tokenizer_spec.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto reader =
      schism::formats::GgufReader::Open(schism::fuzz::WriteInput(data, size, "model.gguf"));
  if (!reader.ok()) return 0;
  for (const auto& tensor : (*reader)->tensors()) {
    // The reader promised the bytes are inside the file; a tensor of at most 1 Mi elements is
    // dequantized in full.
    if (tensor.n_elements == 0 || tensor.n_elements > (1 << 20)) continue;
    std::vector<float> out(static_cast<size_t>(tensor.n_elements));
    (void)(*reader)->ReadTensorAsFloat(tensor, out.data());
  }
  auto spec = schism::tokenizer::TokenizerSpecFromGguf(**reader);
  if (!spec.ok()) return 0;
  schism::fuzz::ExerciseTokenizer(std::move(*spec));
  return 0;
}
