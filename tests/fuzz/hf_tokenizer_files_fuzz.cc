// tokenizer_config.json and generation_config.json of a Hugging Face folder
// (ReadHfTokenizerFiles) against a fixed small vocabulary: the input up to its first NUL byte is
// tokenizer_config.json, the rest (if there is a NUL) generation_config.json. Accepted files give
// ids within the vocabulary, and the tokenizer they describe is run.
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "common/tokenizer/hf_tokenizer_files.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

schism::tokenizer::TokenizerSpec SmallSpec() {
  schism::tokenizer::TokenizerSpec spec;
  spec.tokens = {
      "<|im_start|>", "<|im_end|>", "H",   "e",     "l",  "o",    "Ġ",      "w",  "r", "d",
      "He",           "ll",         "llo", "Hello", "Ġw", "Ġwor", "Ġworld", "\n", "Ċ"};
  spec.merges = {"H e", "l l", "ll o", "He llo", "Ġ w", "Ġw o", "r l", "Ġwo rld"};
  spec.special_token_ids = {0, 1};
  return spec;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string tokenizer_config = input.substr(0, nul);
  const std::string path =
      schism::fuzz::WriteInput(reinterpret_cast<const uint8_t*>(tokenizer_config.data()),
                               tokenizer_config.size(), "tokenizer_config.json");
  const std::filesystem::path folder = std::filesystem::path(path).parent_path();
  if (nul == std::string::npos) {
    std::filesystem::remove(folder / "generation_config.json");
  } else {
    const std::string generation_config = input.substr(nul + 1);
    schism::fuzz::WriteInput(reinterpret_cast<const uint8_t*>(generation_config.data()),
                             generation_config.size(), "generation_config.json");
  }
  schism::tokenizer::TokenizerSpec spec = SmallSpec();
  auto files = schism::tokenizer::ReadHfTokenizerFiles(folder.string(), &spec);
  if (!files.ok()) return 0;
  const int64_t vocab = static_cast<int64_t>(spec.tokens.size());
  for (int32_t id : files->eos_ids) {
    if (id < 0 || id >= vocab) std::abort();
  }
  for (const auto& id : {spec.bos_id, spec.eos_id, spec.pad_id}) {
    if (id && (*id < 0 || *id >= vocab)) std::abort();
  }
  schism::fuzz::ExerciseTokenizer(std::move(spec));
  return 0;
}
