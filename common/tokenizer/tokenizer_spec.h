// Everything that defines a tokenizer, as plain data, filled from GGUF metadata or a Hugging Face
// tokenizer.json. BpeTokenizer runs on it; the loaders only translate formats.
#ifndef SCHISM_COMMON_TOKENIZER_TOKENIZER_SPEC_H_
#define SCHISM_COMMON_TOKENIZER_TOKENIZER_SPEC_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace schism::formats {
class GgufReader;
}

namespace schism::tokenizer {

// How raw text is cut into words before BPE runs on each word.
enum class PreTokenizer {
  kGpt2,        // GPT-2 / SmolLM regex
  kGpt2Digits,  // SmolLM2: every digit isolated first, then the GPT-2 regex
  kLlama3,      // Llama 3 regex (digits in groups of up to 3)
  kQwen2,       // Qwen2 regex (single digits)
};

// The two BPE families: GPT-2's byte-level BPE (bytes mapped to printable code points, regex
// pre-tokenizer) and SentencePiece's (Llama 2, Mistral v0.1: spaces become U+2581 "▁", merges on
// characters, unknown characters fall back to <0xXX> byte tokens).
enum class BpeKind { kByteLevel, kSentencePiece };

struct TokenizerSpec {
  BpeKind kind = BpeKind::kByteLevel;
  std::vector<std::string> tokens;  // id -> token text (byte-level encoded for BPE)
  std::vector<std::string> merges;  // "left right", rank = index
  // SentencePiece from GGUF has scores instead of merges: the adjacent pair whose concatenation
  // is the highest-scoring token merges first.
  std::vector<float> scores;
  bool add_space_prefix = true;            // SentencePiece: prepend "▁" to each text segment
  std::vector<int32_t> special_token_ids;  // matched verbatim in input text before BPE
  PreTokenizer pre_tokenizer = PreTokenizer::kGpt2;
  std::optional<int32_t> bos_id;
  std::optional<int32_t> eos_id;
  std::optional<int32_t> unk_id;
  std::optional<int32_t> pad_id;
  bool add_bos = false;  // prepend BOS when encoding a whole prompt
};

// Reads tokenizer.ggml.* keys: "gpt2" (byte-level BPE) or "llama" (SentencePiece BPE); other
// kinds are an error naming the kind.
absl::StatusOr<TokenizerSpec> TokenizerSpecFromGguf(const formats::GgufReader& gguf);

// Reads a Hugging Face tokenizer.json (model.type "BPE"; byte-level, or SentencePiece-style when
// model.byte_fallback is set or the normalizer maps spaces to "▁").
absl::StatusOr<TokenizerSpec> TokenizerSpecFromJson(const std::string& path);

}  // namespace schism::tokenizer

#endif  // SCHISM_COMMON_TOKENIZER_TOKENIZER_SPEC_H_
