#include "common/tokenizer/tokenizer_spec.h"

#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/formats/gguf_reader.h"

namespace schism::tokenizer {
namespace {

// GGUF token types (llama.cpp): 3 = control, 4 = user-defined; both are matched verbatim.
constexpr int64_t kTokenTypeControl = 3;
constexpr int64_t kTokenTypeUserDefined = 4;

absl::StatusOr<PreTokenizer> PreTokenizerFromGgufName(const std::string& name) {
  if (name == "smollm") return PreTokenizer::kGpt2Digits;
  if (name == "gpt-2" || name == "default" || name == "gpt2") return PreTokenizer::kGpt2;
  if (name == "llama-bpe" || name == "llama3") return PreTokenizer::kLlama3;
  if (name == "qwen2") return PreTokenizer::kQwen2;
  return absl::UnimplementedError(
      absl::StrCat("tokenizer.ggml.pre \"", name,
                   "\" is not supported (supported: smollm, gpt-2, llama-bpe, "
                   "qwen2)"));
}

// A special token's id from the header into `id` (left unset when the key is absent). An id
// beyond int32 is refused by name: narrowing would turn 2^32 + 5 into 5, a valid id.
absl::Status ReadOptionalId(const formats::GgufReader& gguf, const std::string& key,
                            std::optional<int32_t>* id) {
  if (!gguf.Has(key)) return absl::OkStatus();
  auto v = gguf.GetInt(key);
  if (!v.ok()) return v.status();
  if (*v < 0 || *v > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat(gguf.path(), ": ", key, " = ", *v, " is not a token id"));
  }
  *id = static_cast<int32_t>(*v);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TokenizerSpec> TokenizerSpecFromGguf(const formats::GgufReader& gguf) {
  auto model = gguf.GetString("tokenizer.ggml.model");
  if (!model.ok()) return model.status();
  if (*model != "gpt2" && *model != "llama") {
    return absl::UnimplementedError(absl::StrCat(gguf.path(), ": tokenizer.ggml.model \"", *model,
                                                 "\" is not supported (supported: gpt2, llama)"));
  }
  TokenizerSpec spec;
  spec.kind = *model == "llama" ? BpeKind::kSentencePiece : BpeKind::kByteLevel;
  auto tokens = gguf.GetStringArray("tokenizer.ggml.tokens");
  if (!tokens.ok()) return tokens.status();
  spec.tokens = std::move(*tokens);
  if (spec.kind == BpeKind::kByteLevel) {
    auto merges = gguf.GetStringArray("tokenizer.ggml.merges");
    if (!merges.ok()) return merges.status();
    spec.merges = std::move(*merges);
  } else {
    auto scores = gguf.GetFloatArray("tokenizer.ggml.scores");
    if (!scores.ok()) return scores.status();
    if (scores->size() != spec.tokens.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          gguf.path(), ": ", scores->size(), " token scores for ", spec.tokens.size(), " tokens"));
    }
    spec.scores = std::move(*scores);
    if (auto prefix = gguf.GetBool("tokenizer.ggml.add_space_prefix"); prefix.ok()) {
      spec.add_space_prefix = *prefix;
    }
  }
  if (gguf.Has("tokenizer.ggml.token_type")) {
    auto types = gguf.GetIntArray("tokenizer.ggml.token_type");
    if (!types.ok()) return types.status();
    if (types->size() != spec.tokens.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          gguf.path(), ": ", types->size(), " token types for ", spec.tokens.size(), " tokens"));
    }
    for (size_t i = 0; i < types->size(); ++i) {
      if ((*types)[i] == kTokenTypeControl || (*types)[i] == kTokenTypeUserDefined) {
        spec.special_token_ids.push_back(static_cast<int32_t>(i));
      }
    }
  }
  std::string pre = "default";
  if (spec.kind == BpeKind::kByteLevel && gguf.Has("tokenizer.ggml.pre")) {
    auto p = gguf.GetString("tokenizer.ggml.pre");
    if (!p.ok()) return p.status();
    pre = *p;
  }
  auto pre_tokenizer = PreTokenizerFromGgufName(pre);
  if (!pre_tokenizer.ok()) {
    return absl::Status(pre_tokenizer.status().code(),
                        absl::StrCat(gguf.path(), ": ", pre_tokenizer.status().message()));
  }
  spec.pre_tokenizer = *pre_tokenizer;
  for (auto [key, id] : {std::pair{"tokenizer.ggml.bos_token_id", &spec.bos_id},
                         {"tokenizer.ggml.eos_token_id", &spec.eos_id},
                         {"tokenizer.ggml.unknown_token_id", &spec.unk_id},
                         {"tokenizer.ggml.padding_token_id", &spec.pad_id}}) {
    if (auto s = ReadOptionalId(gguf, key, id); !s.ok()) return s;
  }
  if (auto add_bos = gguf.GetBool("tokenizer.ggml.add_bos_token"); add_bos.ok()) {
    spec.add_bos = *add_bos;
  }
  return spec;
}

namespace {

absl::StatusOr<TokenizerSpec> SpecFromJson(const nlohmann::json& root, const std::string& path);

}  // namespace

absl::StatusOr<TokenizerSpec> TokenizerSpecFromJson(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  nlohmann::json root = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(path, ": invalid JSON"));
  // Fields of the wrong type (an id that is a string, a merge that is a number) surface as
  // nlohmann type errors; they are this file's fault and say so.
  try {
    return SpecFromJson(root, path);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": malformed field: ", e.what()));
  }
}

namespace {

absl::StatusOr<TokenizerSpec> SpecFromJson(const nlohmann::json& root, const std::string& path) {
  if (!root.is_object())
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  // const json: every lookup goes through Field (operator[] on a missing key is undefined).
  static const nlohmann::json kNull;
  auto field = [](const nlohmann::json& j, const char* key) -> const nlohmann::json& {
    if (!j.is_object()) return kNull;
    auto it = j.find(key);
    return it == j.end() ? kNull : *it;
  };
  const nlohmann::json& model = field(root, "model");
  if (!model.is_object() || model.value("type", "") != "BPE") {
    return absl::UnimplementedError(
        absl::StrCat(path, ": model.type must be \"BPE\" (byte-level BPE tokenizers only)"));
  }
  TokenizerSpec spec;
  const nlohmann::json& vocab = field(model, "vocab");
  if (!vocab.is_object()) return absl::InvalidArgumentError(absl::StrCat(path, ": no model.vocab"));
  // Ids are dense in a real vocabulary; one far beyond the number of entries would make the
  // table that size (a corrupt id of 2^40 must not become an allocation).
  const int64_t entries = static_cast<int64_t>(vocab.size() + field(root, "added_tokens").size());
  absl::Status bad_id = absl::OkStatus();
  auto place = [&](const std::string& text, int64_t id) {
    if (id < 0) return;
    if (id > 2 * entries + 1024) {
      bad_id = absl::InvalidArgumentError(absl::StrCat(path, ": token id ", id, " of \"", text,
                                                       "\" is far beyond the ", entries,
                                                       " entries of the vocabulary"));
      return;
    }
    if (static_cast<size_t>(id) >= spec.tokens.size()) spec.tokens.resize(id + 1);
    spec.tokens[id] = text;
  };
  for (auto it = vocab.begin(); it != vocab.end(); ++it) place(it.key(), it.value().get<int64_t>());
  if (!bad_id.ok()) return bad_id;
  const nlohmann::json& merges = field(model, "merges");
  if (!merges.is_null() && !merges.is_array())
    return absl::InvalidArgumentError(absl::StrCat(path, ": model.merges must be a list"));
  for (const nlohmann::json& merge : merges) {
    if (merge.is_string()) {
      spec.merges.push_back(merge.get<std::string>());
    } else if (merge.is_array() && merge.size() == 2) {
      spec.merges.push_back(merge[0].get<std::string>() + " " + merge[1].get<std::string>());
    } else {
      return absl::InvalidArgumentError(absl::StrCat(path, ": malformed entry in model.merges"));
    }
  }
  const nlohmann::json& added_tokens = field(root, "added_tokens");
  if (!added_tokens.is_null() && !added_tokens.is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": added_tokens must be a list"));
  }
  for (const nlohmann::json& added : added_tokens) {
    const int64_t id = added.value("id", int64_t{-1});
    place(added.value("content", ""), id);
    if (!bad_id.ok()) return bad_id;
    spec.special_token_ids.push_back(static_cast<int32_t>(id));
  }
  const std::string normalizer = field(root, "normalizer").dump();
  if (model.value("byte_fallback", false) || normalizer.find("\u2581") != std::string::npos ||
      normalizer.find("\xe2\x96\x81") != std::string::npos) {
    spec.kind = BpeKind::kSentencePiece;
    spec.add_space_prefix = normalizer.find("Prepend") != std::string::npos;
  }
  // Recognise the pre-tokenizer by its regex, as llama.cpp's converter does.
  const std::string pre = field(root, "pre_tokenizer").dump();
  if (pre.find("\\\\p{N}{1,3}") != std::string::npos) {
    spec.pre_tokenizer = PreTokenizer::kLlama3;
  } else if (pre.find("[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}|") != std::string::npos) {
    spec.pre_tokenizer = PreTokenizer::kQwen2;
  } else if (pre.find("\"Digits\"") != std::string::npos) {
    spec.pre_tokenizer = PreTokenizer::kGpt2Digits;
  } else {
    spec.pre_tokenizer = PreTokenizer::kGpt2;
  }
  if (field(model, "unk_token").is_string()) {
    auto it = vocab.find(field(model, "unk_token").get<std::string>());
    if (it != vocab.end()) spec.unk_id = it->get<int32_t>();
  }
  return spec;
}

}  // namespace
}  // namespace schism::tokenizer
