// The non-weight files of a Hugging Face model folder, written for a model read from GGUF so an
// export of a .gguf source is a folder that schism and `transformers` load: config.json,
// tokenizer.json, tokenizer_config.json (chat template, special tokens) and
// generation_config.json.
#ifndef SCHISM_WORKER_RUNTIME_HF_METADATA_H_
#define SCHISM_WORKER_RUNTIME_HF_METADATA_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/formats/gguf_reader.h"
#include "common/tokenizer/tokenizer_spec.h"
#include "worker/runtime/model_config.h"

namespace schism::model {

// config.json text; `torch_dtype` is "float32", "bfloat16" or "float16".
std::string HfConfigJson(const ModelConfig& config, const std::string& torch_dtype,
                         const tokenizer::TokenizerSpec& tokenizer);

// tokenizer.json text that Hugging Face `tokenizers` loads to the ids BpeTokenizer gives for
// `spec` (byte-level BPE; SentencePiece GGUF vocabularies are UNIMPLEMENTED for now).
absl::StatusOr<std::string> HfTokenizerJson(const tokenizer::TokenizerSpec& spec);

// Writes the four files into `folder`. Errors name the file or the unsupported feature (a GGUF
// rope_freqs tensor has no config.json equivalent).
absl::Status WriteHfMetadataFromGguf(const formats::GgufReader& gguf, const ModelConfig& config,
                                     const std::string& torch_dtype, const std::string& folder);

}  // namespace schism::model

#endif  // SCHISM_WORKER_RUNTIME_HF_METADATA_H_
