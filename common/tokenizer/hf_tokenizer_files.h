// The files of a Hugging Face model folder that surround tokenizer.json: tokenizer_config.json
// (special tokens by text, add_bos_token, the chat template, or chat_template.jinja / .json
// beside it) and generation_config.json (eos_token_id). Torch-free, so the fuzz build reads
// them too (tests/fuzz/hf_tokenizer_files_fuzz.cc).
#ifndef SCHISM_COMMON_TOKENIZER_HF_TOKENIZER_FILES_H_
#define SCHISM_COMMON_TOKENIZER_HF_TOKENIZER_FILES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tokenizer/tokenizer_spec.h"

namespace schism::tokenizer {

struct HfTokenizerFiles {
  std::string bos_token, eos_token;  // their text ("" when unnamed)
  std::string chat_template;         // "" when the folder has none
  std::vector<int32_t> eos_ids;      // generation_config.json's, each within the vocabulary
};

// Reads `folder`'s tokenizer_config.json (required) and generation_config.json (optional) against
// `spec` (tokenizer.json's vocabulary) and sets spec->add_bos and the bos, eos and pad ids of the
// tokens they name. A mistyped value is an error naming the file and the key.
absl::StatusOr<HfTokenizerFiles> ReadHfTokenizerFiles(const std::string& folder,
                                                      TokenizerSpec* spec);

}  // namespace schism::tokenizer

#endif  // SCHISM_COMMON_TOKENIZER_HF_TOKENIZER_FILES_H_
