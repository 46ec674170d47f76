// A Hugging Face tokenizer.json, then encoding and decoding with what it describes.
#include <cstdint>
#include <vector>

#include "common/tokenizer/tokenizer_spec.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto spec = schism::tokenizer::TokenizerSpecFromJson(
      schism::fuzz::WriteInput(data, size, "tokenizer.json"));
  if (!spec.ok()) return 0;
  schism::fuzz::ExerciseTokenizer(std::move(*spec));
  return 0;
}
