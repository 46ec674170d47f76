#include "worker/runtime/model_config.h"

#include <fstream>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/formats/gguf_reader.h"

namespace schism::model {
namespace {

struct ArchitectureName {
  const char* hf_name;    // config.json "architectures"
  const char* gguf_name;  // general.architecture
  Architecture architecture;
};

constexpr ArchitectureName kArchitectures[] = {
    {"LlamaForCausalLM", "llama", Architecture::kLlama},
    {"MistralForCausalLM", "mistral", Architecture::kMistral},
    {"Qwen2ForCausalLM", "qwen2", Architecture::kQwen2},
    {"Qwen3ForCausalLM", "qwen3", Architecture::kQwen3},
};

absl::Status UnknownArchitecture(const std::string& where, const std::string& name) {
  return absl::UnimplementedError(absl::StrCat(
      where, ": architecture \"", name,
      "\" is not supported; supported: ", absl::StrJoin(SupportedArchitectureNames(), ", ")));
}

void ApplyArchitectureDefaults(ModelConfig* config) {
  if (config->architecture == Architecture::kQwen2) config->attention_bias = true;
  if (config->architecture == Architecture::kQwen3) config->qk_norm = true;
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
    if (a.architecture == architecture) return a.gguf_name;  // the two agree for these families
  }
  return "";
}

std::vector<std::string> SupportedArchitectureNames() {
  std::vector<std::string> names;
  for (const auto& a : kArchitectures) names.push_back(a.hf_name);
  return names;
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
  if (!known) return UnknownArchitecture(path, arch);
  ApplyArchitectureDefaults(&c);
  try {
    c.vocab_size = j.at("vocab_size").get<int>();
    c.hidden_size = j.at("hidden_size").get<int>();
    c.intermediate_size = j.at("intermediate_size").get<int>();
    c.num_layers = j.at("num_hidden_layers").get<int>();
    c.num_heads = j.at("num_attention_heads").get<int>();
    c.num_kv_heads = j.value("num_key_value_heads", c.num_heads);
    c.head_dim = j.contains("head_dim") && j["head_dim"].is_number_integer()
                     ? j["head_dim"].get<int>()
                     : (c.num_heads > 0 ? c.hidden_size / c.num_heads : 0);
    c.rms_norm_eps = j.value("rms_norm_eps", 1e-6);
    c.rope_theta = j.value("rope_theta", 10000.0);
    c.tie_word_embeddings = j.value("tie_word_embeddings", false);
    c.max_position_embeddings = j.value("max_position_embeddings", 4096);
    if (j.contains("attention_bias") && j["attention_bias"].is_boolean()) {
      c.attention_bias = j["attention_bias"].get<bool>();
    }
    if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) {
      const auto& rs = j["rope_scaling"];
      const std::string type = rs.value("rope_type", rs.value("type", ""));
      if (type == "llama3") {
        c.rope_scaling.enabled = true;
        c.rope_scaling.factor = rs.at("factor").get<double>();
        c.rope_scaling.low_freq_factor = rs.at("low_freq_factor").get<double>();
        c.rope_scaling.high_freq_factor = rs.at("high_freq_factor").get<double>();
        c.rope_scaling.original_max_position_embeddings =
            rs.at("original_max_position_embeddings").get<double>();
      } else if (!type.empty() && type != "default") {
        return absl::UnimplementedError(
            absl::StrCat(path, ": rope_scaling type \"", type, "\" is not supported (llama3)"));
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
    if (*arch == a.gguf_name) {
      c.architecture = a.architecture;
      known = true;
    }
  }
  if (!known) return UnknownArchitecture(gguf.path(), *arch);
  ApplyArchitectureDefaults(&c);
  const std::string p = *arch + ".";
  auto get_int = [&](const std::string& key, int* out) -> absl::Status {
    auto v = gguf.GetInt(p + key);
    if (!v.ok()) return v.status();
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
  if (gguf.Has(p + "context_length"))
    get_int("context_length", &c.max_position_embeddings).IgnoreError();
  auto eps = gguf.GetFloat(p + "attention.layer_norm_rms_epsilon");
  if (!eps.ok()) return eps.status();
  c.rms_norm_eps = *eps;
  if (auto theta = gguf.GetFloat(p + "rope.freq_base"); theta.ok()) c.rope_theta = *theta;
  if (gguf.Has(p + "vocab_size")) {
    if (auto s = get_int("vocab_size", &c.vocab_size); !s.ok()) return s;
  } else if (auto tokens = gguf.GetStringArray("tokenizer.ggml.tokens"); tokens.ok()) {
    c.vocab_size = static_cast<int>(tokens->size());
  }
  c.tie_word_embeddings = gguf.FindTensor("output.weight") == nullptr;
  c.attention_bias = gguf.FindTensor("blk.0.attn_q.bias") != nullptr;
  // Llama 3 rope scaling in GGUF is the tensor rope_freqs.weight, read with the weights.
  if (auto s = Validate(c, gguf.path()); !s.ok()) return s;
  return c;
}

}  // namespace schism::model
