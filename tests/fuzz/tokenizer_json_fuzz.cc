// A Hugging Face tokenizer.json, then encoding and decoding with what it describes.
#include <cstdint>
#include <vector>

#include "common/tokenizer/bpe_tokenizer.h"
#include "common/tokenizer/tokenizer_spec.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto spec = schism::tokenizer::TokenizerSpecFromJson(
      schism::fuzz::WriteInput(data, size, "tokenizer.json"));
  if (!spec.ok()) return 0;
  auto tokenizer = schism::tokenizer::BpeTokenizer::Create(std::move(*spec));
  if (!tokenizer.ok()) return 0;
  const std::vector<int32_t> ids =
      (*tokenizer)->Encode("Hello <|im_start|> world\n\xe2\x96\x81x", true);
  (void)(*tokenizer)->Decode(ids);
  return 0;
}
