#include "common/tokenizer/bpe_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace schism::tokenizer {
namespace {

// Pre-tokenizer patterns of the Hugging Face tokenizers these models ship with.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// GPT-2's reversible byte -> printable code point table, and its inverse.
struct ByteTable {
  std::array<std::string, 256> byte_to_text;
  std::unordered_map<uint32_t, uint8_t> code_point_to_byte;

  ByteTable() {
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
      const uint32_t cp = printable ? b : next++;
      AppendUtf8(cp, &byte_to_text[b]);
      code_point_to_byte[cp] = static_cast<uint8_t>(b);
    }
  }
};

const ByteTable& Bytes() {
  static const ByteTable table;
  return table;
}

// Length of the UTF-8 sequence starting with `lead`, or 0 for a continuation/invalid byte.
int Utf8Length(uint8_t lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 0;
}

}  // namespace

const char* PreTokenizerPattern(PreTokenizer pre) {
  switch (pre) {
    case PreTokenizer::kLlama3:
      return kLlama3Pattern;
    case PreTokenizer::kQwen2:
      return kQwen2Pattern;
    default:
      return kGpt2Pattern;
  }
}

struct BpeTokenizer::Regex {
  pcre2_code* code = nullptr;
  ~Regex() { pcre2_code_free(code); }
};

BpeTokenizer::BpeTokenizer(TokenizerSpec spec) : spec_(std::move(spec)) {}
BpeTokenizer::~BpeTokenizer() = default;

absl::StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::Create(TokenizerSpec spec) {
  if (spec.tokens.empty()) return absl::InvalidArgumentError("tokenizer has an empty vocabulary");
  std::unique_ptr<BpeTokenizer> tok(new BpeTokenizer(std::move(spec)));
  const TokenizerSpec& s = tok->spec_;
  for (size_t i = 0; i < s.tokens.size(); ++i) {
    tok->token_ids_.emplace(s.tokens[i], static_cast<int32_t>(i));
  }
  for (size_t i = 0; i < s.merges.size(); ++i) {
    if (s.merges[i].find(' ') == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer merge ", i, " (\"", s.merges[i], "\") has no space"));
    }
    tok->merge_ranks_.emplace(s.merges[i], static_cast<int32_t>(i));
  }
  // Ids named by metadata (a corrupt file may name any number) must be tokens.
  using NamedId = std::pair<const char*, std::optional<int32_t>>;
  for (const auto& [name, id] : {NamedId{"bos", s.bos_id}, NamedId{"eos", s.eos_id},
                                 NamedId{"pad", s.pad_id}, NamedId{"unk", s.unk_id}}) {
    if (id && (*id < 0 || *id >= tok->vocab_size())) {
      return absl::InvalidArgumentError(absl::StrCat("tokenizer: ", name, " token id ", *id,
                                                     " is outside the vocabulary of ",
                                                     tok->vocab_size()));
    }
  }
  std::vector<int32_t> specials = s.special_token_ids;
  for (int32_t id : specials) {
    if (id < 0 || id >= tok->vocab_size()) {
      return absl::InvalidArgumentError(absl::StrCat("special token id ", id, " out of range"));
    }
  }
  std::sort(specials.begin(), specials.end(),
            [&](int32_t a, int32_t b) { return s.tokens[a].size() > s.tokens[b].size(); });
  for (int32_t id : specials) {
    if (s.tokens[id].empty()) continue;
    tok->special_texts_.push_back(s.tokens[id]);
    tok->special_ids_.push_back(id);
  }

  if (s.kind == BpeKind::kSentencePiece) {
    tok->byte_token_ids_.assign(256, -1);
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof(name), "<0x%02X>", b);
      if (auto it = tok->token_ids_.find(name); it != tok->token_ids_.end())
        tok->byte_token_ids_[b] = it->second;
    }
    if (s.merges.empty() && s.scores.size() != s.tokens.size()) {
      return absl::InvalidArgumentError(
          "SentencePiece tokenizer needs merges or one score per token");
    }
  }
  const char* pattern = PreTokenizerPattern(s.pre_tokenizer);
  int error = 0;
  PCRE2_SIZE error_offset = 0;
  tok->regex_ = std::make_unique<Regex>();
  tok->regex_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                                    PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error,
                                    &error_offset, nullptr);
  if (tok->regex_->code == nullptr) {
    return absl::InternalError(absl::StrCat("pre-tokenizer regex failed to compile at ",
                                            error_offset, " (pcre2 error ", error, ")"));
  }
  pcre2_jit_compile(tok->regex_->code, PCRE2_JIT_COMPLETE);
  return tok;
}

std::optional<int32_t> BpeTokenizer::TokenId(const std::string& token_text) const {
  auto it = token_ids_.find(token_text);
  if (it == token_ids_.end()) return std::nullopt;
  return it->second;
}

void BpeTokenizer::MergeSymbols(std::vector<std::string>* symbols_ptr) const {
  std::vector<std::string>& symbols = *symbols_ptr;
  const bool by_score = merge_ranks_.empty() && !spec_.scores.empty();
  std::string key;
  while (symbols.size() > 1) {
    // Lower priority value merges first: the merge rank, or minus the merged token's score.
    double best_priority = std::numeric_limits<double>::infinity();
    size_t best = 0;
    for (size_t i = 0; i + 1 < symbols.size(); ++i) {
      double priority;
      if (by_score) {
        key.assign(symbols[i]).append(symbols[i + 1]);
        auto it = token_ids_.find(key);
        if (it == token_ids_.end()) continue;
        priority = -static_cast<double>(spec_.scores[it->second]);
      } else {
        key.assign(symbols[i]).append(" ").append(symbols[i + 1]);
        auto it = merge_ranks_.find(key);
        if (it == merge_ranks_.end()) continue;
        priority = it->second;
      }
      if (priority < best_priority) {
        best_priority = priority;
        best = i;
      }
    }
    if (best_priority == std::numeric_limits<double>::infinity()) break;
    if (by_score) {  // SentencePiece merges one pair at a time
      symbols[best] += symbols[best + 1];
      symbols.erase(symbols.begin() + best + 1);
      continue;
    }
    // Ranked BPE merges every occurrence of the best pair, left to right.
    const std::string left = symbols[best], right = symbols[best + 1];
    std::vector<std::string> merged;
    merged.reserve(symbols.size());
    for (size_t i = 0; i < symbols.size(); ++i) {
      if (i + 1 < symbols.size() && symbols[i] == left && symbols[i + 1] == right) {
        merged.push_back(left + right);
        ++i;
      } else {
        merged.push_back(std::move(symbols[i]));
      }
    }
    symbols = std::move(merged);
  }
}

void BpeTokenizer::EncodeWord(std::string_view word, std::vector<int32_t>* out) const {
  // Symbols start as one mapped byte each, then merge.
  std::vector<std::string> symbols;
  symbols.reserve(word.size());
  for (unsigned char b : word) symbols.push_back(Bytes().byte_to_text[b]);
  MergeSymbols(&symbols);
  for (const std::string& symbol : symbols) {
    auto it = token_ids_.find(symbol);
    if (it != token_ids_.end()) {
      out->push_back(it->second);
    } else if (spec_.unk_id) {
      out->push_back(*spec_.unk_id);
    }
  }
}

void BpeTokenizer::EncodeSentencePiece(std::string_view segment, std::vector<int32_t>* out) const {
  static const std::string kSpace = "\xe2\x96\x81";  // U+2581
  std::string text = spec_.add_space_prefix ? kSpace : "";
  for (char c : segment) {
    if (c == ' ') {
      text += kSpace;
    } else {
      text += c;
    }
  }
  std::vector<std::string> symbols;  // one per UTF-8 character
  for (size_t i = 0; i < text.size();) {
    const size_t len =
        std::min<size_t>(std::max(1, Utf8Length(static_cast<uint8_t>(text[i]))), text.size() - i);
    symbols.push_back(text.substr(i, len));
    i += len;
  }
  MergeSymbols(&symbols);
  for (const std::string& symbol : symbols) {
    if (auto it = token_ids_.find(symbol); it != token_ids_.end()) {
      out->push_back(it->second);
      continue;
    }
    for (unsigned char b : symbol) {  // byte fallback
      if (byte_token_ids_[b] >= 0) {
        out->push_back(byte_token_ids_[b]);
      } else if (spec_.unk_id) {
        out->push_back(*spec_.unk_id);
      }
    }
  }
}

std::vector<int32_t> BpeTokenizer::Encode(std::string_view text, bool add_bos) const {
  std::vector<int32_t> ids;
  if (add_bos && spec_.add_bos && spec_.bos_id) ids.push_back(*spec_.bos_id);
  pcre2_match_data* match = pcre2_match_data_create_from_pattern(regex_->code, nullptr);

  // Runs the pre-tokenizer and BPE on a stretch of text free of special tokens.
  auto encode_plain = [&](std::string_view plain) {
    if (spec_.kind == BpeKind::kSentencePiece) {
      EncodeSentencePiece(plain, &ids);
      return;
    }
    auto split_regex = [&](std::string_view piece) {
      PCRE2_SIZE start = 0;
      while (start < piece.size()) {
        const int rc = pcre2_match(regex_->code, reinterpret_cast<PCRE2_SPTR>(piece.data()),
                                   piece.size(), start, 0, match, nullptr);
        if (rc < 0) {  // no further match: the rest is one word
          EncodeWord(piece.substr(start), &ids);
          break;
        }
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(match);
        if (ov[0] > start) EncodeWord(piece.substr(start, ov[0] - start), &ids);
        if (ov[1] == ov[0]) {  // empty match: step one byte to make progress
          EncodeWord(piece.substr(ov[0], 1), &ids);
          start = ov[0] + 1;
          continue;
        }
        EncodeWord(piece.substr(ov[0], ov[1] - ov[0]), &ids);
        start = ov[1];
      }
    };
    if (spec_.pre_tokenizer != PreTokenizer::kGpt2Digits) {
      split_regex(plain);
      return;
    }
    size_t begin = 0;
    for (size_t i = 0; i < plain.size(); ++i) {
      if (plain[i] >= '0' && plain[i] <= '9') {
        if (i > begin) split_regex(plain.substr(begin, i - begin));
        split_regex(plain.substr(i, 1));
        begin = i + 1;
      }
    }
    if (begin < plain.size()) split_regex(plain.substr(begin));
  };

  size_t plain_start = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t matched = 0;
    int32_t matched_id = -1;
    for (size_t k = 0; k < special_texts_.size(); ++k) {
      const std::string& special = special_texts_[k];
      if (text.compare(pos, special.size(), special) == 0) {
        matched = special.size();
        matched_id = special_ids_[k];
        break;  // longest first
      }
    }
    if (matched == 0) {
      ++pos;
      continue;
    }
    if (pos > plain_start) encode_plain(text.substr(plain_start, pos - plain_start));
    ids.push_back(matched_id);
    pos += matched;
    plain_start = pos;
  }
  if (plain_start < text.size()) encode_plain(text.substr(plain_start));
  pcre2_match_data_free(match);
  return ids;
}

std::string BpeTokenizer::TokenBytes(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return "";
  const std::string& text = spec_.tokens[id];
  if (spec_.kind == BpeKind::kSentencePiece && text.size() == 6 && text.rfind("<0x", 0) == 0 &&
      text.back() == '>' && std::isxdigit(static_cast<unsigned char>(text[3])) &&
      std::isxdigit(static_cast<unsigned char>(text[4]))) {
    return std::string(1, static_cast<char>(std::stoi(text.substr(3, 2), nullptr, 16)));
  }
  if (std::find(special_ids_.begin(), special_ids_.end(), id) != special_ids_.end()) return text;
  if (spec_.kind == BpeKind::kSentencePiece) {
    std::string out;
    for (size_t i = 0; i < text.size(); ++i) {
      if (text.compare(i, 3, "\xe2\x96\x81") == 0) {
        out += ' ';
        i += 2;
      } else {
        out += text[i];
      }
    }
    return out;
  }
  std::string out;
  for (size_t i = 0; i < text.size();) {
    const int len = std::max(1, Utf8Length(static_cast<uint8_t>(text[i])));
    uint32_t cp = static_cast<uint8_t>(text[i]);
    if (len > 1) {
      cp &= (0xFF >> (len + 1));
      for (int k = 1; k < len && i + k < text.size(); ++k) {
        cp = (cp << 6) | (static_cast<uint8_t>(text[i + k]) & 0x3F);
      }
    }
    auto it = Bytes().code_point_to_byte.find(cp);
    if (it != Bytes().code_point_to_byte.end()) {
      out.push_back(static_cast<char>(it->second));
    } else {
      out.append(text, i, len);
    }
    i += len;
  }
  return out;
}

std::string BpeTokenizer::Decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (int32_t id : ids) out += TokenBytes(id);
  if (spec_.kind == BpeKind::kSentencePiece && spec_.add_space_prefix && !out.empty() &&
      out[0] == ' ') {
    out.erase(0, 1);
  }
  return out;
}

std::string StreamingDecoder::Push(int32_t id) {
  std::string bytes = tokenizer_.TokenBytes(id);
  const auto& spec = tokenizer_.spec();
  if (at_start_ && spec.kind == BpeKind::kSentencePiece && spec.add_space_prefix &&
      !bytes.empty() && bytes[0] == ' ') {
    bytes.erase(0, 1);
  }
  at_start_ = false;
  pending_ += bytes;
  // Emit everything up to the start of a trailing incomplete UTF-8 sequence.
  size_t cut = pending_.size();
  for (size_t back = 1; back <= 3 && back <= pending_.size(); ++back) {
    const uint8_t b = static_cast<uint8_t>(pending_[pending_.size() - back]);
    if ((b & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    const int len = Utf8Length(b);
    if (len > static_cast<int>(back)) cut = pending_.size() - back;
    break;
  }
  std::string ready = pending_.substr(0, cut);
  pending_.erase(0, cut);
  return ready;
}

std::string StreamingDecoder::Flush() {
  std::string rest;
  rest.swap(pending_);
  return rest;
}

}  // namespace schism::tokenizer
