#include "worker/runtime/model_config.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <optional>
#include <variant>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/formats/gguf_reader.h"

namespace schism::model {
namespace {

struct ArchitectureName {
  const char* hf_name;        // config.json "architectures"
  const char* hf_model_type;  // config.json "model_type"
  const char* gguf_name;      // general.architecture
  Architecture architecture;
};

constexpr ArchitectureName kArchitectures[] = {
    {"LlamaForCausalLM", "llama", "llama", Architecture::kLlama},
    {"MistralForCausalLM", "mistral", "mistral", Architecture::kMistral},
    {"Qwen2ForCausalLM", "qwen2", "qwen2", Architecture::kQwen2},
    {"Qwen3ForCausalLM", "qwen3", "qwen3", Architecture::kQwen3},
    {"Gemma3ForCausalLM", "gemma3_text", "gemma3", Architecture::kGemma3},
    {"Qwen3MoeForCausalLM", "qwen3_moe", "qwen3moe", Architecture::kQwen3Moe},
    // llama.cpp writes Mixtral as "llama" with experts (see ModelConfigFromGguf).
    {"MixtralForCausalLM", "mixtral", "", Architecture::kMixtral},
    // Phi-3 and Phi-4: fused qkv and gate_up projections, optional partial rotary.
    {"Phi3ForCausalLM", "phi3", "phi3", Architecture::kPhi3},
};

// Gemma 3's fixed choices (Gemma3TextConfig's defaults; llama.cpp hard-codes the same).
constexpr int kGemma3SlidingWindowPattern = 6;  // every 6th layer is global
constexpr double kGemma3LocalRopeTheta = 10000.0;

// Layer i is local unless (i + 1) is a multiple of `pattern`.
std::vector<bool> SlidingLayersByPattern(int num_layers, int pattern) {
  std::vector<bool> sliding(num_layers);
  for (int i = 0; i < num_layers; ++i) sliding[i] = pattern <= 0 || (i + 1) % pattern != 0;
  return sliding;
}

absl::Status UnknownArchitecture(const std::string& where, const std::string& name) {
  return absl::UnimplementedError(absl::StrCat(
      where, ": architecture \"", name,
      "\" is not supported; supported: ", absl::StrJoin(SupportedArchitectureNames(), ", ")));
}

void ApplyArchitectureDefaults(ModelConfig* config) {
  if (config->architecture == Architecture::kQwen2) config->attention_bias = true;
  if (config->architecture == Architecture::kQwen3 ||
      config->architecture == Architecture::kQwen3Moe) {
    config->qk_norm = true;
  }
  if (config->architecture == Architecture::kGemma3) {
    config->qk_norm = true;
    config->gemma_norms = true;
    config->scale_embeddings = true;
    config->gelu_tanh = true;
    config->tie_word_embeddings = true;
    config->rope_local_theta = kGemma3LocalRopeTheta;
  }
}

absl::Status Validate(const ModelConfig& c, const std::string& where) {
  auto positive = [&](int v, const char* name) -> absl::Status {
    if (v <= 0) return absl::InvalidArgumentError(absl::StrCat(where, ": ", name, " must be > 0"));
    return absl::OkStatus();
  };
  for (auto [v, name] : {std::pair{c.vocab_size, "vocab_size"},
                         {c.hidden_size, "hidden_size"},
                         {c.intermediate_size, "intermediate_size"},
                         {c.num_layers, "num_hidden_layers"},
                         {c.num_heads, "num_attention_heads"},
                         {c.num_kv_heads, "num_key_value_heads"},
                         {c.head_dim, "head_dim"}}) {
    if (auto s = positive(v, name); !s.ok()) return s;
  }
  if (c.num_heads % c.num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": num_attention_heads ", c.num_heads,
                                                   " is not a multiple of num_key_value_heads ",
                                                   c.num_kv_heads));
  }
  if (c.head_dim % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": head_dim must be even for RoPE"));
  }
  if (!c.sliding_layers.empty() &&
      (static_cast<int>(c.sliding_layers.size()) != c.num_layers || c.sliding_window <= 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        where,
        ": sliding-window attention needs a positive sliding_window and one layer type per "
        "layer (",
        c.sliding_layers.size(), " for ", c.num_layers, " layers)"));
  }
  if (c.num_experts > 0 && (c.experts_per_token <= 0 || c.experts_per_token > c.num_experts ||
                            c.expert_intermediate_size <= 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": a mixture of ", c.num_experts, " experts needs 1..", c.num_experts,
        " experts per token (got ", c.experts_per_token, ") and a positive expert width"));
  }
  if (c.rope_linear_factor <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": rope scaling factor must be > 0"));
  }
  return absl::OkStatus();
}

// A JSON number or null (nullopt); anything else throws through nlohmann's type check.
std::optional<double> OptionalNumber(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  return j[key].get<double>();
}

// One RoPE parameter set ({"rope_theta", "rope_type", "factor", ...}): rope_type "default" or
// "linear" (Gemma 3's global layers) here; Llama 3's type is handled by the caller.
absl::Status ReadGemmaRope(const nlohmann::json& rope, const std::string& where, double* theta,
                           double* linear_factor) {
  if (rope.contains("rope_theta")) *theta = rope["rope_theta"].get<double>();
  const std::string type = rope.value("rope_type", rope.value("type", "default"));
  if (type == "linear") {
    *linear_factor = rope.at("factor").get<double>();
  } else if (type != "default") {
    return absl::UnimplementedError(absl::StrCat(
        where, ": rope type \"", type, "\" is not supported for Gemma 3 (default, linear)"));
  }
  return absl::OkStatus();
}

// The Gemma 3 keys of config.json: layer types, window, attention scale, RoPE of both layer
// kinds (transformers 5's "rope_parameters" per layer type, or 4.x's rope_theta,
// rope_local_base_freq and rope_scaling), softcapping.
absl::Status ReadGemma3Json(const nlohmann::json& j, const std::string& path, ModelConfig* c) {
  if (const std::string act = j.value("hidden_activation", "gelu_pytorch_tanh");
      act != "gelu_pytorch_tanh") {
    return absl::UnimplementedError(absl::StrCat(path, ": hidden_activation \"", act,
                                                 "\" is not supported (gelu_pytorch_tanh)"));
  }
  if (j.value("use_bidirectional_attention", false)) {
    return absl::UnimplementedError(
        absl::StrCat(path, ": use_bidirectional_attention (an encoder) is not supported"));
  }
  if (OptionalNumber(j, "attn_logit_softcapping")) {
    return absl::UnimplementedError(
        absl::StrCat(path, ": attn_logit_softcapping is not supported (Gemma 2 models use it)"));
  }
  c->final_logit_softcap = OptionalNumber(j, "final_logit_softcapping").value_or(0);
  c->query_pre_attn_scalar = j.value("query_pre_attn_scalar", 256.0);
  c->sliding_window = j.value("sliding_window", 4096);
  if (j.contains("layer_types") && !j["layer_types"].is_null()) {
    c->sliding_layers.clear();
    for (const auto& type : j["layer_types"]) {
      const std::string t = type.get<std::string>();
      if (t != "sliding_attention" && t != "full_attention") {
        return absl::InvalidArgumentError(absl::StrCat(path, ": layer_types entry \"", t,
                                                       "\" (sliding_attention or full_attention)"));
      }
      c->sliding_layers.push_back(t == "sliding_attention");
    }
  } else {
    const int pattern = j.contains("sliding_window_pattern")
                            ? j["sliding_window_pattern"].get<int>()
                            : j.value("_sliding_window_pattern", kGemma3SlidingWindowPattern);
    c->sliding_layers = SlidingLayersByPattern(c->num_layers, pattern);
  }
  c->rope_theta = 1000000.0;
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object()) {
    const auto& rp = j["rope_parameters"];
    if (!rp.contains("full_attention") && !rp.contains("sliding_attention")) {
      // One parameter set for the global layers (the local ones keep rope_local_base_freq).
      c->rope_local_theta = j.value("rope_local_base_freq", kGemma3LocalRopeTheta);
      return ReadGemmaRope(rp, path, &c->rope_theta, &c->rope_linear_factor);
    }
    for (auto it = rp.begin(); it != rp.end(); ++it) {
      if (it.key() != "full_attention" && it.key() != "sliding_attention") {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": rope_parameters entry \"", it.key(),
                         "\" (full_attention and sliding_attention are Gemma 3's layer types)"));
      }
    }
    if (rp.contains("full_attention")) {
      if (auto s =
              ReadGemmaRope(rp["full_attention"], path, &c->rope_theta, &c->rope_linear_factor);
          !s.ok())
        return s;
    }
    if (rp.contains("sliding_attention")) {
      double unused_factor = 1.0;
      if (auto s =
              ReadGemmaRope(rp["sliding_attention"], path, &c->rope_local_theta, &unused_factor);
          !s.ok())
        return s;
      if (unused_factor != 1.0) {
        return absl::UnimplementedError(
            absl::StrCat(path, ": rope scaling on sliding-window layers is not supported"));
      }
    }
    return absl::OkStatus();
  }
  c->rope_theta = j.value("rope_theta", 1000000.0);
  c->rope_local_theta = j.value("rope_local_base_freq", kGemma3LocalRopeTheta);
  if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) {
    double unused_theta = c->rope_theta;
    return ReadGemmaRope(j["rope_scaling"], path, &unused_theta, &c->rope_linear_factor);
  }
  return absl::OkStatus();
}

// Mistral, Mixtral and Phi-3 attend within "sliding_window" positions on every layer when it is a
// number; Qwen's use_sliding_window (window on layers from max_window_layers on) is refused.
absl::Status ReadSlidingWindowJson(const nlohmann::json& j, const std::string& path,
                                   ModelConfig* c) {
  if (c->architecture == Architecture::kMistral || c->architecture == Architecture::kMixtral ||
      c->architecture == Architecture::kPhi3) {
    if (auto window = OptionalNumber(j, "sliding_window")) {
      c->sliding_window = static_cast<int>(*window);
      c->sliding_layers.assign(c->num_layers, true);
    }
  } else if (j.value("use_sliding_window", false)) {
    return absl::UnimplementedError(
        absl::StrCat(path, ": use_sliding_window is not supported for this architecture"));
  }
  // transformers 5 lists layer types for every family; only Gemma 3 mixes them here.
  if (j.contains("layer_types") && j["layer_types"].is_array()) {
    for (const auto& type : j["layer_types"]) {
      if (!type.is_string() || type.get<std::string>() != "full_attention") {
        return absl::UnimplementedError(absl::StrCat(
            path, ": layer_types other than full_attention are not supported for this family"));
      }
    }
  }
  return absl::OkStatus();
}

// Mixture-of-experts keys: Qwen3-MoE (num_experts, or transformers 5's num_local_experts;
// moe_intermediate_size; norm_topk_prob; dense layers by decoder_sparse_step and mlp_only_layers)
// and Mixtral (num_local_experts, experts of intermediate_size, always renormalized).
absl::Status ReadMoeJson(const nlohmann::json& j, const std::string& path, ModelConfig* c) {
  const bool mixtral = c->architecture == Architecture::kMixtral;
  c->num_experts = j.contains("num_experts") && !mixtral ? j["num_experts"].get<int>()
                                                         : j.at("num_local_experts").get<int>();
  c->experts_per_token = j.at("num_experts_per_tok").get<int>();
  c->expert_intermediate_size =
      mixtral ? c->intermediate_size : j.at("moe_intermediate_size").get<int>();
  c->norm_topk_prob = mixtral || j.value("norm_topk_prob", false);
  const int step = mixtral ? 1 : j.value("decoder_sparse_step", 1);
  std::vector<int> dense =
      mixtral || !j.contains("mlp_only_layers") || j["mlp_only_layers"].is_null()
          ? std::vector<int>{}
          : j["mlp_only_layers"].get<std::vector<int>>();
  if (step <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": decoder_sparse_step must be > 0"));
  }
  c->moe_layers.assign(c->num_layers, false);
  for (int i = 0; i < c->num_layers; ++i) {
    c->moe_layers[i] = c->num_experts > 0 && (i + 1) % step == 0 &&
                       std::find(dense.begin(), dense.end(), i) == dense.end();
  }
  // router_jitter_noise is training-time noise only: inference routes without it (eval()).
  if (j.contains("shared_expert_intermediate_size")) {
    return absl::UnimplementedError(
        absl::StrCat(path, ": shared experts (shared_expert_intermediate_size) are not supported"));
  }
  return absl::OkStatus();
}

// Llama 3's rope_scaling ({"rope_type": "llama3", ...}); "default" or absent is plain RoPE.
absl::Status ReadLlamaRopeScaling(const nlohmann::json& rs, const std::string& path,
                                  ModelConfig* c) {
  const std::string type = rs.value("rope_type", rs.value("type", "default"));
  if (type == "llama3") {
    c->rope_scaling.enabled = true;
    c->rope_scaling.factor = rs.at("factor").get<double>();
    c->rope_scaling.low_freq_factor = rs.at("low_freq_factor").get<double>();
    c->rope_scaling.high_freq_factor = rs.at("high_freq_factor").get<double>();
    c->rope_scaling.original_max_position_embeddings =
        rs.at("original_max_position_embeddings").get<double>();
  } else if (type != "default") {
    return absl::UnimplementedError(
        absl::StrCat(path, ": rope_scaling type \"", type, "\" is not supported (llama3)"));
  }
  return absl::OkStatus();
}

// llama.cpp's reading of gemma3.* keys: a sliding window only when the key is there (then the
// pattern key, an integer or one boolean per layer, defaults to 6), the local RoPE base
// (default 10000), a linear RoPE factor for the global layers, the 27B model's attention scale.
absl::Status ReadGemma3Gguf(const formats::GgufReader& gguf, const std::string& p, ModelConfig* c) {
  if (c->num_heads <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(gguf.path(), ": ", p, "attention.head_count ",
                                                   c->num_heads, " is not a positive count"));
  }
  c->query_pre_attn_scalar =
      c->num_layers == 62 ? c->hidden_size / c->num_heads : c->head_dim;  // 27B: hidden / heads
  if (auto window = gguf.GetInt(p + "attention.sliding_window"); window.ok() && *window > 0) {
    if (*window > std::numeric_limits<int>::max()) {
      return absl::InvalidArgumentError(absl::StrCat(
          gguf.path(), ": ", p, "attention.sliding_window ", *window, " is out of range"));
    }
    c->sliding_window = static_cast<int>(*window);
    const std::string pattern_key = p + "attention.sliding_window_pattern";
    if (auto per_layer = gguf.GetIntArray(pattern_key); per_layer.ok()) {
      c->sliding_layers.assign(per_layer->begin(), per_layer->end());
    } else if (auto flags = gguf.metadata().find(pattern_key);
               flags != gguf.metadata().end() &&
               std::holds_alternative<formats::GgufValue::Array>(flags->second.value)) {
      for (const auto& flag : std::get<formats::GgufValue::Array>(flags->second.value)) {
        const bool* b = std::get_if<bool>(&flag.value);
        if (b == nullptr) {
          return absl::InvalidArgumentError(absl::StrCat(
              gguf.path(), ": ", pattern_key, " is neither an integer nor booleans per layer"));
        }
        c->sliding_layers.push_back(*b);
      }
    } else {
      auto pattern = gguf.Has(pattern_key) ? gguf.GetInt(pattern_key)
                                           : absl::StatusOr<int64_t>(kGemma3SlidingWindowPattern);
      if (!pattern.ok()) return pattern.status();
      if (*pattern < 0 || *pattern > c->num_layers) {
        return absl::InvalidArgumentError(absl::StrCat(gguf.path(), ": ", pattern_key, " ",
                                                       *pattern, " is not in 0..block_count"));
      }
      c->sliding_layers = SlidingLayersByPattern(c->num_layers, static_cast<int>(*pattern));
    }
  }
  if (auto theta = gguf.GetFloat(p + "rope.freq_base_swa"); theta.ok())
    c->rope_local_theta = *theta;
  if (gguf.Has(p + "rope.scaling.type")) {
    auto type = gguf.GetString(p + "rope.scaling.type");
    if (!type.ok()) return type.status();
    if (*type != "linear" && *type != "none") {
      return absl::UnimplementedError(absl::StrCat(gguf.path(), ": rope scaling type \"", *type,
                                                   "\" is not supported for Gemma 3 (linear)"));
    }
  }
  if (auto factor = gguf.GetFloat(p + "rope.scaling.factor"); factor.ok() && *factor != 0) {
    c->rope_linear_factor = *factor;
  }
  if (auto cap = gguf.GetFloat(p + "final_logit_softcapping"); cap.ok()) {
    c->final_logit_softcap = *cap;
  }
  return absl::OkStatus();
}

// Experts in GGUF: <arch>.expert_count (Mixtral is "llama" with experts), expert_used_count,
// expert_feed_forward_length (Qwen3-MoE; Mixtral's experts are feed_forward_length wide), every
// layer sparse, weights renormalized (llama.cpp's build_moe_ffn for both). Experts must be the
// fused 3-D tensors blk.N.ffn_{gate,up,down}_exps of current converters.
absl::Status ReadMoeGguf(const formats::GgufReader& gguf, const std::string& p, ModelConfig* c) {
  const int64_t experts = gguf.GetInt(p + "expert_count").value_or(0);
  const int64_t used = gguf.GetInt(p + "expert_used_count").value_or(0);
  const int64_t width =
      gguf.GetInt(p + "expert_feed_forward_length").value_or(c->intermediate_size);
  constexpr int64_t kMaxExperts = 1 << 16;  // more than any model has; keeps the casts exact
  if (experts > kMaxExperts || used < 0 || used > kMaxExperts || width <= 0 || width > (1 << 30)) {
    return absl::InvalidArgumentError(absl::StrCat(gguf.path(), ": expert_count ", experts,
                                                   ", expert_used_count ", used, ", expert width ",
                                                   width, " are out of range"));
  }
  if (experts <= 0) {
    if (c->architecture == Architecture::kQwen3Moe) {
      return absl::InvalidArgumentError(absl::StrCat(gguf.path(), ": ", p, "expert_count missing"));
    }
    return absl::OkStatus();
  }
  if (c->architecture == Architecture::kLlama) c->architecture = Architecture::kMixtral;
  if (c->architecture != Architecture::kMixtral && c->architecture != Architecture::kQwen3Moe) {
    return absl::UnimplementedError(
        absl::StrCat(gguf.path(), ": experts in a ", p, " model are not supported"));
  }
  if (gguf.FindTensor("blk.0.ffn_gate_exps.weight") == nullptr) {
    return absl::UnimplementedError(
        absl::StrCat(gguf.path(),
                     ": experts stored one tensor each (blk.N.ffn_gate.E.weight, an old "
                     "converter's layout) are not supported; reconvert with a current llama.cpp"));
  }
  if (!gguf.Has(p + "expert_used_count")) {
    return absl::InvalidArgumentError(
        absl::StrCat(gguf.path(), ": ", p, "expert_used_count missing"));
  }
  c->num_experts = static_cast<int>(experts);
  c->experts_per_token = static_cast<int>(used);
  c->expert_intermediate_size = static_cast<int>(width);
  c->norm_topk_prob = true;
  c->moe_layers.assign(c->num_layers, true);
  return absl::OkStatus();
}

}  // namespace

const char* HfArchitectureName(Architecture architecture) {
  for (const ArchitectureName& a : kArchitectures) {
    if (a.architecture == architecture) return a.hf_name;
  }
  return "";
}

const char* HfModelType(Architecture architecture) {
  for (const ArchitectureName& a : kArchitectures) {
    if (a.architecture == architecture) return a.hf_model_type;
  }
  return "";
}

std::vector<std::string> SupportedArchitectureNames() {
  std::vector<std::string> names;
  for (const auto& a : kArchitectures) names.push_back(a.hf_name);
  return names;
}

// The integer keys of a config.json, checked before any is read: nlohmann narrows a 64-bit value
// to int silently and converts an out-of-range float with undefined behaviour, and a layer or
// expert count of 2^31 would run a loop that long. null means unset; an integral float (4096.0)
// counts as that integer.
absl::Status CheckIntegerKeys(const nlohmann::json& j, const std::string& path) {
  constexpr int64_t kCount = int64_t{1} << 16;  // layers, heads, experts
  constexpr int64_t kWidth = int64_t{1} << 30;  // vocabulary and widths
  constexpr int64_t kPositions = std::numeric_limits<int>::max();
  static constexpr std::pair<const char*, int64_t> kKeys[] = {
      {"vocab_size", kWidth},
      {"hidden_size", kWidth},
      {"intermediate_size", kWidth},
      {"num_hidden_layers", kCount},
      {"num_attention_heads", kCount},
      {"num_key_value_heads", kCount},
      {"head_dim", kCount},
      {"max_position_embeddings", kPositions},
      {"sliding_window", kPositions},
      {"sliding_window_pattern", kCount},
      {"num_experts", kCount},
      {"num_local_experts", kCount},
      {"num_experts_per_tok", kCount},
      {"moe_intermediate_size", kWidth},
      {"decoder_sparse_step", kCount}};
  auto check = [&](const nlohmann::json& v, const char* key, int64_t max) -> absl::Status {
    bool ok = false;
    if (v.is_number_unsigned()) {
      ok = v.get<uint64_t>() <= static_cast<uint64_t>(max);
    } else if (v.is_number_integer()) {
      ok = v.get<int64_t>() >= 0 && v.get<int64_t>() <= max;
    } else if (v.is_number_float()) {
      const double d = v.get<double>();
      ok = d >= 0 && d <= static_cast<double>(max) && d == std::floor(d);
    }
    if (ok) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(path, ": \"", key, "\" is ", v.dump(),
                                                   "; expected an integer from 0 to ", max));
  };
  for (const auto& [key, max] : kKeys) {
    if (!j.contains(key) || j[key].is_null()) continue;
    if (auto s = check(j[key], key, max); !s.ok()) return s;
  }
  // Qwen3-MoE's dense layers: a list of layer indices.
  if (j.contains("mlp_only_layers") && !j["mlp_only_layers"].is_null()) {
    if (!j["mlp_only_layers"].is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": \"mlp_only_layers\" is ",
                                                     j["mlp_only_layers"].dump(),
                                                     "; expected a list of layer indices"));
    }
    for (const auto& layer : j["mlp_only_layers"]) {
      if (auto s = check(layer, "mlp_only_layers", kCount); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> ModelConfigFromHfJson(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": invalid JSON"));
  }
  if (!j.contains("architectures") || !j["architectures"].is_array() ||
      j["architectures"].empty() || !j["architectures"][0].is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": missing \"architectures\""));
  }
  const std::string arch = j["architectures"][0].get<std::string>();
  ModelConfig c;
  bool known = false;
  for (const auto& a : kArchitectures) {
    if (arch == a.hf_name) {
      c.architecture = a.architecture;
      known = true;
    }
  }
  // Vision-language checkpoints: schism loads and ablates their text decoder, whose keys are in
  // "text_config" (over the top level, where transformers 4.x kept Qwen2-VL's).
  bool vision_language = false;
  for (const auto& [wrapper, decoder] :
       {std::pair{"Gemma3ForConditionalGeneration", Architecture::kGemma3},
        {"Qwen2_5_VLForConditionalGeneration", Architecture::kQwen2},
        {"Qwen2VLForConditionalGeneration", Architecture::kQwen2}}) {
    if (arch == wrapper) {
      c.architecture = decoder;
      known = vision_language = true;
    }
  }
  if (!known) return UnknownArchitecture(path, arch);
  if (vision_language && j.contains("text_config") && j["text_config"].is_object()) {
    nlohmann::json text = j;
    text.erase("text_config");
    text.update(j["text_config"]);
    j = std::move(text);
  }
  if (auto s = CheckIntegerKeys(j, path); !s.ok()) return s;
  ApplyArchitectureDefaults(&c);
  // Gemma 3's published configs leave Gemma3TextConfig's defaults out (its 4B's text_config has
  // only the sizes that differ); other families write every size.
  const bool gemma = c.architecture == Architecture::kGemma3;
  auto size = [&](const char* key, int gemma_default) {
    return gemma ? j.value(key, gemma_default) : j.at(key).get<int>();
  };
  try {
    c.vocab_size = size("vocab_size", 262208);
    c.hidden_size = size("hidden_size", 2304);
    c.intermediate_size = size("intermediate_size", 9216);
    c.num_layers = size("num_hidden_layers", 26);
    c.num_heads = size("num_attention_heads", 8);
    c.num_kv_heads = j.value("num_key_value_heads", gemma ? 4 : c.num_heads);
    c.head_dim = j.contains("head_dim") && j["head_dim"].is_number_integer()
                     ? j["head_dim"].get<int>()
                     : (c.architecture == Architecture::kGemma3
                            ? 256
                            : (c.num_heads > 0 ? c.hidden_size / c.num_heads : 0));
    c.rms_norm_eps = j.value("rms_norm_eps", 1e-6);
    c.rope_theta = j.value("rope_theta", 10000.0);
    c.tie_word_embeddings = j.value("tie_word_embeddings", c.tie_word_embeddings);
    c.max_position_embeddings = j.value("max_position_embeddings", 4096);
    if (j.contains("attention_bias") && j["attention_bias"].is_boolean()) {
      c.attention_bias = j["attention_bias"].get<bool>();
    }
    if (c.architecture == Architecture::kGemma3) {
      if (auto s = ReadGemma3Json(j, path, &c); !s.ok()) return s;
    } else {
      if (const std::string act = j.value("hidden_act", "silu"); act != "silu") {
        return absl::UnimplementedError(
            absl::StrCat(path, ": hidden_act \"", act, "\" is not supported (silu)"));
      }
      // transformers 5 writes "rope_parameters" ({"rope_theta", "rope_type", ...}); 4.x wrote
      // rope_theta and rope_scaling.
      const char* rope_key = j.contains("rope_parameters") && j["rope_parameters"].is_object()
                                 ? "rope_parameters"
                                 : "rope_scaling";
      if (j.contains(rope_key) && j[rope_key].is_object()) {
        nlohmann::json rope = j[rope_key];
        c.rope_theta = rope.value("rope_theta", c.rope_theta);
        // Qwen2-VL's multimodal RoPE rotates text-only prompts as plain RoPE: its three position
        // streams (time, height, width) are all the token position then.
        if (vision_language && rope.value("rope_type", rope.value("type", "")) == "mrope") {
          rope["rope_type"] = "default";
          rope.erase("type");
        }
        if (auto s = ReadLlamaRopeScaling(rope, path, &c); !s.ok()) return s;
      }
      if (auto s = ReadSlidingWindowJson(j, path, &c); !s.ok()) return s;
      if (auto factor = OptionalNumber(j, "partial_rotary_factor")) {
        if (!(*factor > 0 && *factor <= 1)) {
          return absl::InvalidArgumentError(absl::StrCat(path, ": partial_rotary_factor ", *factor,
                                                         " is not a fraction in (0, 1]"));
        }
        c.rope_dim = static_cast<int>(std::lround(*factor * c.head_dim));
        if (c.rope_dim <= 0 || c.rope_dim > c.head_dim || c.rope_dim % 2 != 0) {
          return absl::InvalidArgumentError(absl::StrCat(
              path, ": partial_rotary_factor ", *factor, " gives ", c.rope_dim, " rotated dims of ",
              c.head_dim, "; an even number in 2..head_dim is needed"));
        }
      }
      if (c.architecture == Architecture::kQwen3Moe || c.architecture == Architecture::kMixtral) {
        if (auto s = ReadMoeJson(j, path, &c); !s.ok()) return s;
      }
    }
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", e.what()));
  }
  if (auto s = Validate(c, path); !s.ok()) return s;
  return c;
}

absl::StatusOr<ModelConfig> ModelConfigFromGguf(const formats::GgufReader& gguf) {
  auto arch = gguf.GetString("general.architecture");
  if (!arch.ok()) return arch.status();
  ModelConfig c;
  bool known = false;
  for (const auto& a : kArchitectures) {
    if (*arch == a.gguf_name && *a.gguf_name != '\0') {
      c.architecture = a.architecture;
      known = true;
    }
  }
  if (!known) return UnknownArchitecture(gguf.path(), *arch);
  ApplyArchitectureDefaults(&c);
  const std::string p = *arch + ".";
  // A count read into an int: a 64-bit value beyond int (2^32 + 2 layers would wrap to 2) or
  // below 0 is refused by name, not truncated.
  auto get_int = [&](const std::string& key, int* out) -> absl::Status {
    auto v = gguf.GetInt(p + key);
    if (!v.ok()) return v.status();
    if (*v < 0 || *v > std::numeric_limits<int>::max()) {
      return absl::InvalidArgumentError(absl::StrCat(gguf.path(), ": ", p, key, " = ", *v,
                                                     " is out of range (0 to ",
                                                     std::numeric_limits<int>::max(), ")"));
    }
    *out = static_cast<int>(*v);
    return absl::OkStatus();
  };
  for (auto [key, out] : {std::pair{"embedding_length", &c.hidden_size},
                          {"feed_forward_length", &c.intermediate_size},
                          {"block_count", &c.num_layers},
                          {"attention.head_count", &c.num_heads}}) {
    if (auto s = get_int(key, out); !s.ok()) return s;
  }
  c.num_kv_heads = c.num_heads;
  if (gguf.Has(p + "attention.head_count_kv")) {
    if (auto s = get_int("attention.head_count_kv", &c.num_kv_heads); !s.ok()) return s;
  }
  c.head_dim = c.num_heads > 0 ? c.hidden_size / c.num_heads : 0;
  if (gguf.Has(p + "attention.key_length")) {
    if (auto s = get_int("attention.key_length", &c.head_dim); !s.ok()) return s;
  }
  if (gguf.Has(p + "context_length")) {
    if (auto st = get_int("context_length", &c.max_position_embeddings); !st.ok()) return st;
  }
  auto eps = gguf.GetFloat(p + "attention.layer_norm_rms_epsilon");
  if (!eps.ok()) return eps.status();
  c.rms_norm_eps = *eps;
  if (auto theta = gguf.GetFloat(p + "rope.freq_base"); theta.ok()) c.rope_theta = *theta;
  if (gguf.Has(p + "vocab_size")) {
    if (auto s = get_int("vocab_size", &c.vocab_size); !s.ok()) return s;
  } else if (auto tokens = gguf.GetStringArray("tokenizer.ggml.tokens"); tokens.ok()) {
    if (tokens->size() > static_cast<size_t>(std::numeric_limits<int>::max()))
      return absl::InvalidArgumentError(absl::StrCat(gguf.path(), ": too many tokens"));
    c.vocab_size = static_cast<int>(tokens->size());
  }
  c.tie_word_embeddings = gguf.FindTensor("output.weight") == nullptr;
  c.attention_bias = gguf.FindTensor("blk.0.attn_q.bias") != nullptr;
  // Llama 3 rope scaling in GGUF is the tensor rope_freqs.weight, read with the weights.
  if (c.architecture == Architecture::kGemma3) {
    if (auto s = ReadGemma3Gguf(gguf, p, &c); !s.ok()) return s;
  }
  if (auto s = ReadMoeGguf(gguf, p, &c); !s.ok()) return s;
  if (auto dims = gguf.GetInt(p + "rope.dimension_count"); dims.ok() && *dims != c.head_dim) {
    // Checked as the 64-bit value, before it is narrowed (2^32 + 64 is not 64).
    if (*dims <= 0 || *dims > c.head_dim || *dims % 2 != 0) {
      return absl::InvalidArgumentError(absl::StrCat(gguf.path(), ": ", p, "rope.dimension_count ",
                                                     *dims, " does not fit head_dim ", c.head_dim));
    }
    c.rope_dim = static_cast<int>(*dims);
  }
  if (c.architecture == Architecture::kPhi3) {
    // Phi-3's window covers every layer (as transformers applies it; llama.cpp turns it off).
    if (auto window = gguf.GetInt(p + "attention.sliding_window"); window.ok() && *window > 0) {
      if (auto st = get_int("attention.sliding_window", &c.sliding_window); !st.ok()) return st;
      c.sliding_layers.assign(c.num_layers, true);
    }
  }
  if (gguf.FindTensor("rope_factors_long.weight") != nullptr) {
    return absl::UnimplementedError(
        absl::StrCat(gguf.path(),
                     ": LongRoPE (rope_factors_long/short, Phi-3 128k and Phi-4-mini) is not "
                     "supported"));
  }
  if (auto s = Validate(c, gguf.path()); !s.ok()) return s;
  return c;
}

}  // namespace schism::model
