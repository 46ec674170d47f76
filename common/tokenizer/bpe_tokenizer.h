// Byte-level BPE (GPT-2 family: SmolLM2, Llama 3, Qwen2): special tokens split out first, then a
// pre-tokenizer regex cuts words, each word's bytes are mapped to printable code points and merged
// by rank. Thread-safe for concurrent Encode/Decode after construction.
#ifndef SCHISM_COMMON_TOKENIZER_BPE_TOKENIZER_H_
#define SCHISM_COMMON_TOKENIZER_BPE_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tokenizer/tokenizer_spec.h"

namespace schism::tokenizer {

// The regex that cuts text into words for `pre` (kGpt2Digits isolates digits first, then uses
// the GPT-2 pattern).
const char* PreTokenizerPattern(PreTokenizer pre);

class BpeTokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<BpeTokenizer>> Create(TokenizerSpec spec);
  ~BpeTokenizer();
  BpeTokenizer(const BpeTokenizer&) = delete;
  BpeTokenizer& operator=(const BpeTokenizer&) = delete;

  // Encodes UTF-8 text. Special tokens written in the text (e.g. "<|im_start|>") become their ids.
  // `add_bos` prepends BOS when the spec asks for it.
  std::vector<int32_t> Encode(std::string_view text, bool add_bos = false) const;

  // Bytes of the tokens concatenated; may end inside a UTF-8 sequence (see StreamingDecoder).
  std::string Decode(const std::vector<int32_t>& ids) const;
  std::string TokenBytes(int32_t id) const;

  const TokenizerSpec& spec() const { return spec_; }
  int32_t vocab_size() const { return static_cast<int32_t>(spec_.tokens.size()); }
  std::optional<int32_t> TokenId(const std::string& token_text) const;

 private:
  explicit BpeTokenizer(TokenizerSpec spec);
  void EncodeWord(std::string_view word, std::vector<int32_t>* out) const;
  // SentencePiece: one text segment (no special tokens in it).
  void EncodeSentencePiece(std::string_view segment, std::vector<int32_t>* out) const;
  // Merges adjacent symbols by rank (merges) or by score (GGUF SentencePiece) until none apply.
  void MergeSymbols(std::vector<std::string>* symbols) const;

  struct Regex;
  TokenizerSpec spec_;
  std::unordered_map<std::string, int32_t> token_ids_;
  std::unordered_map<std::string, int32_t> merge_ranks_;  // "left right" -> rank
  std::vector<std::string> special_texts_;                // longest first
  std::vector<int32_t> special_ids_;
  std::vector<int32_t> byte_token_ids_;  // SentencePiece <0xXX> tokens, -1 when absent
  std::unique_ptr<Regex> regex_;
};

// Turns a stream of token ids into text without ever emitting half a UTF-8 character: bytes of
// an incomplete sequence are held back until the next token completes them.
class StreamingDecoder {
 public:
  explicit StreamingDecoder(const BpeTokenizer& tokenizer) : tokenizer_(tokenizer) {}
  // Returns the newly completed text.
  std::string Push(int32_t id);
  // Whatever is held back (invalid or unfinished sequences), emitted as-is.
  std::string Flush();

 private:
  const BpeTokenizer& tokenizer_;
  std::string pending_;
  bool at_start_ = true;  // SentencePiece drops the space its prefix "▁" adds
};

}  // namespace schism::tokenizer

#endif  // SCHISM_COMMON_TOKENIZER_BPE_TOKENIZER_H_
