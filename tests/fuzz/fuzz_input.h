// What the fuzz targets share: the readers under test open files, so each input is written to a
// file first (in $TMPDIR, one per process: libFuzzer runs one input at a time); tokenizers read
// from an input are run on some text.
#ifndef SCHISM_TESTS_FUZZ_FUZZ_INPUT_H_
#define SCHISM_TESTS_FUZZ_FUZZ_INPUT_H_

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "common/tokenizer/bpe_tokenizer.h"
#include "common/tokenizer/tokenizer_spec.h"

namespace schism::fuzz {

// Writes the input to a per-process file named `name` (in a folder of its own) and returns its
// path.
inline std::string WriteInput(const uint8_t* data, size_t size, const std::string& name) {
  static const std::string dir = [] {
    const std::filesystem::path d =
        std::filesystem::temp_directory_path() / ("schism_fuzz_" + std::to_string(getpid()));
    std::filesystem::create_directories(d);
    return d.string();
  }();
  const std::string path = dir + "/" + name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

// Builds the tokenizer a reader described and runs text with special tokens, spaces and a
// multi-byte character through it, both ways.
inline void ExerciseTokenizer(tokenizer::TokenizerSpec spec) {
  auto tokenizer = tokenizer::BpeTokenizer::Create(std::move(spec));
  if (!tokenizer.ok()) return;
  const std::vector<int32_t> ids =
      (*tokenizer)->Encode("Hello <|im_start|> world\n\xe2\x96\x81x", /*add_bos=*/true);
  (void)(*tokenizer)->Decode(ids);
}

}  // namespace schism::fuzz

#endif  // SCHISM_TESTS_FUZZ_FUZZ_INPUT_H_
