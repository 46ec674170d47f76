#include "worker/runtime/hf_metadata.h"

#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/text_file.h"
#include "common/tokenizer/bpe_tokenizer.h"

namespace schism::model {
namespace {

using Json = nlohmann::ordered_json;

Json ByteLevel(bool use_regex) {
  return {{"type", "ByteLevel"},
          {"add_prefix_space", false},
          {"trim_offsets", true},
          {"use_regex", use_regex}};
}

Json PreTokenizerJson(tokenizer::PreTokenizer pre) {
  Json sequence = {{"type", "Sequence"}, {"pretokenizers", Json::array()}};
  switch (pre) {
    case tokenizer::PreTokenizer::kGpt2:
      return ByteLevel(true);
    case tokenizer::PreTokenizer::kGpt2Digits:
      sequence["pretokenizers"].push_back({{"type", "Digits"}, {"individual_digits", true}});
      sequence["pretokenizers"].push_back(ByteLevel(true));
      return sequence;
    default: {
      Json split = {{"type", "Split"}, {"behavior", "Isolated"}, {"invert", false}};
      split["pattern"] = {{"Regex", tokenizer::PreTokenizerPattern(pre)}};
      sequence["pretokenizers"].push_back(split);
      sequence["pretokenizers"].push_back(ByteLevel(false));
      return sequence;
    }
  }
}

std::string TokenText(const tokenizer::TokenizerSpec& spec, const std::optional<int32_t>& id) {
  return id && *id >= 0 && static_cast<size_t>(*id) < spec.tokens.size() ? spec.tokens[*id] : "";
}

}  // namespace

std::string HfConfigJson(const ModelConfig& c, const std::string& torch_dtype,
                         const tokenizer::TokenizerSpec& tokenizer) {
  Json j;
  j["architectures"] = {HfArchitectureName(c.architecture)};
  j["model_type"] = HfModelType(c.architecture);
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_layers;
  j["num_attention_heads"] = c.num_heads;
  j["num_key_value_heads"] = c.num_kv_heads;
  j["head_dim"] = c.head_dim;
  j["rms_norm_eps"] = c.rms_norm_eps;
  if (c.architecture == Architecture::kGemma3) {
    // Gemma 3 as transformers 4.50+ reads it (5.x converts these keys to rope_parameters).
    j["hidden_activation"] = "gelu_pytorch_tanh";
    // transformers 5 validates it as an integer (Gemma 3 27B: 168).
    j["query_pre_attn_scalar"] = static_cast<int64_t>(std::lround(c.query_pre_attn_scalar));
    j["rope_theta"] = c.rope_theta;
    j["rope_local_base_freq"] = c.rope_local_theta;
    j["rope_scaling"] = nullptr;
    if (c.rope_linear_factor != 1.0) {
      j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", c.rope_linear_factor}};
    }
    j["sliding_window"] = c.sliding_window > 0 ? c.sliding_window : c.max_position_embeddings;
    Json types = Json::array();
    for (int i = 0; i < c.num_layers; ++i)
      types.push_back(c.IsSliding(i) ? "sliding_attention" : "full_attention");
    j["layer_types"] = types;
    j["attn_logit_softcapping"] = nullptr;
    j["final_logit_softcapping"] =
        c.final_logit_softcap > 0 ? Json(c.final_logit_softcap) : Json(nullptr);
  } else {
    j["hidden_act"] = "silu";
    j["rope_theta"] = c.rope_theta;
    if (c.rope_dim > 0 && c.rope_dim != c.head_dim) {
      j["partial_rotary_factor"] = static_cast<double>(c.rope_dim) / c.head_dim;
    }
    if (c.sliding_window > 0) j["sliding_window"] = c.sliding_window;
  }
  if (c.rope_scaling.enabled) {
    j["rope_scaling"] = {
        {"rope_type", "llama3"},
        {"factor", c.rope_scaling.factor},
        {"low_freq_factor", c.rope_scaling.low_freq_factor},
        {"high_freq_factor", c.rope_scaling.high_freq_factor},
        {"original_max_position_embeddings", c.rope_scaling.original_max_position_embeddings}};
  }
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["vocab_size"] = c.vocab_size;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["attention_bias"] = c.attention_bias;
  if (tokenizer.bos_id) j["bos_token_id"] = *tokenizer.bos_id;
  if (tokenizer.eos_id) j["eos_token_id"] = *tokenizer.eos_id;
  j["torch_dtype"] = torch_dtype;
  return j.dump(2) + "\n";
}

absl::StatusOr<std::string> HfTokenizerJson(const tokenizer::TokenizerSpec& spec) {
  if (spec.kind != tokenizer::BpeKind::kByteLevel) {
    return absl::UnimplementedError(
        "writing tokenizer.json for a SentencePiece GGUF vocabulary is not supported; export from "
        "the model's Hugging Face folder instead");
  }
  Json added = Json::array();
  for (int32_t id : spec.special_token_ids) {
    added.push_back({{"id", id},
                     {"content", spec.tokens.at(id)},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  Json vocab = Json::object();
  for (size_t i = 0; i < spec.tokens.size(); ++i) vocab[spec.tokens[i]] = i;
  Json merges = Json::array();
  for (const std::string& m : spec.merges) {
    const size_t space = m.find(' ');
    merges.push_back({m.substr(0, space), space == std::string::npos ? "" : m.substr(space + 1)});
  }
  Json j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = added;
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = PreTokenizerJson(spec.pre_tokenizer);
  j["post_processor"] = nullptr;
  j["decoder"] = ByteLevel(true);
  j["model"] = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"ignore_merges", false},
                {"vocab", vocab},
                {"merges", merges}};
  try {
    return j.dump();
  } catch (const nlohmann::json::type_error& e) {  // 316: a string that is not UTF-8
    return absl::DataLossError(absl::StrCat(
        "the vocabulary holds a token that is not valid UTF-8, so no tokenizer.json can hold it (",
        e.what(), ")"));
  }
}

absl::Status WriteHfMetadataFromGguf(const formats::GgufReader& gguf, const ModelConfig& config,
                                     const std::string& torch_dtype, const std::string& folder) {
  if (gguf.FindTensor("rope_freqs.weight") != nullptr && !config.rope_scaling.enabled) {
    return absl::UnimplementedError(
        absl::StrCat(gguf.path(),
                     ": its rope_freqs tensor (Llama 3 rope scaling) has no config.json equivalent "
                     "here; export from the model's Hugging Face folder instead"));
  }
  if (config.num_experts > 0) {
    return absl::UnimplementedError(
        absl::StrCat(gguf.path(),
                     ": exporting a mixture-of-experts GGUF (fused expert tensors) is not "
                     "supported; export from the model's Hugging Face folder instead"));
  }
  auto spec = tokenizer::TokenizerSpecFromGguf(gguf);
  if (!spec.ok()) return spec.status();
  auto tokenizer_json = HfTokenizerJson(*spec);
  if (!tokenizer_json.ok()) return tokenizer_json.status();

  Json tc;
  tc["add_bos_token"] = spec->add_bos;
  tc["add_eos_token"] = false;
  tc["bos_token"] = TokenText(*spec, spec->bos_id);
  tc["eos_token"] = TokenText(*spec, spec->eos_id);
  tc["pad_token"] = TokenText(*spec, spec->pad_id ? spec->pad_id : spec->eos_id);
  if (spec->unk_id) tc["unk_token"] = TokenText(*spec, spec->unk_id);
  if (auto tmpl = gguf.GetString("tokenizer.chat_template"); tmpl.ok()) tc["chat_template"] = *tmpl;
  tc["clean_up_tokenization_spaces"] = false;
  tc["model_max_length"] = config.max_position_embeddings;
  tc["tokenizer_class"] = "PreTrainedTokenizerFast";

  Json gen;
  if (spec->bos_id) gen["bos_token_id"] = *spec->bos_id;
  if (spec->eos_id) gen["eos_token_id"] = *spec->eos_id;
  if (spec->pad_id) gen["pad_token_id"] = *spec->pad_id;

  const std::string f = folder + "/";
  if (auto s = common::WriteTextFile(f + "config.json", HfConfigJson(config, torch_dtype, *spec));
      !s.ok())
    return s;
  if (auto s = common::WriteTextFile(f + "tokenizer.json", *tokenizer_json); !s.ok()) return s;
  std::string tokenizer_config;
  try {
    tokenizer_config = tc.dump(2) + "\n";
  } catch (const nlohmann::json::type_error& e) {  // a special token or template not in UTF-8
    return absl::DataLossError(absl::StrCat(gguf.path(),
                                            ": a special token or the chat template is not valid "
                                            "UTF-8, so no tokenizer_config.json can hold it (",
                                            e.what(), ")"));
  }
  if (auto s = common::WriteTextFile(f + "tokenizer_config.json", tokenizer_config); !s.ok())
    return s;
  return common::WriteTextFile(f + "generation_config.json", gen.dump(2) + "\n");
}

}  // namespace schism::model
