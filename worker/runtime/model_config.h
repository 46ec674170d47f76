// The shape of a decoder-only transformer, read from a Hugging Face config.json or from GGUF
// metadata. Plain data; no libtorch.
#ifndef SCHISM_WORKER_RUNTIME_MODEL_CONFIG_H_
#define SCHISM_WORKER_RUNTIME_MODEL_CONFIG_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace schism::formats {
class GgufReader;
}

namespace schism::model {

// Families the runtime implements. They differ only in the switches of ModelConfig.
enum class Architecture { kLlama, kMistral, kQwen2, kQwen3, kGemma3, kQwen3Moe, kMixtral, kPhi3 };

// Llama 3's frequency-dependent RoPE rescaling ("rope_type": "llama3").
struct Llama3RopeScaling {
  bool enabled = false;
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  double original_max_position_embeddings = 8192;
};

struct ModelConfig {
  Architecture architecture = Architecture::kLlama;
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  Llama3RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v projections carry a bias (Qwen2)
  bool qk_norm = false;         // RMSNorm on each head of q and k before RoPE (Qwen3)
  int max_position_embeddings = 4096;
  int rope_dim = 0;  // leading dims of each head that RoPE rotates (Phi's partial rotary); 0: all

  // Gemma 3. Every switch below is off (Llama semantics) for the other families.
  // RMSNorms scale by (1 + w), computed in float32; the attention output and the MLP output are
  // normed again before they join the residual ("sandwich" norms).
  bool gemma_norms = false;
  bool scale_embeddings = false;     // embeddings times sqrt(hidden_size)
  bool gelu_tanh = false;            // GeGLU with tanh-approximated GELU instead of SwiGLU
  double query_pre_attn_scalar = 0;  // attention scale 1/sqrt(this); 0: 1/sqrt(head_dim)
  int sliding_window = 0;            // a query sees keys less than this many positions back
  std::vector<bool> sliding_layers;  // per layer: local (sliding-window) attention
  double rope_local_theta = 0;  // Gemma 3: RoPE base of its sliding-window layers; 0: rope_theta
  double rope_linear_factor = 1.0;  // global layers' positions divided by this ("linear")
  double final_logit_softcap = 0;   // logits = c tanh(logits / c); 0: none

  // Mixture of experts (Qwen3-MoE, Mixtral): a router picks `experts_per_token` of `num_experts`
  // SwiGLU experts of width `expert_intermediate_size` per token (softmax, top-k, renormalized
  // when `norm_topk_prob`); layers not in `moe_layers` keep a dense MLP of intermediate_size.
  int num_experts = 0;
  int experts_per_token = 0;
  int expert_intermediate_size = 0;
  bool norm_topk_prob = true;
  std::vector<bool> moe_layers;  // per layer

  int RotaryDim() const { return rope_dim > 0 ? rope_dim : head_dim; }
  bool IsSliding(int layer) const {
    return layer < static_cast<int>(sliding_layers.size()) && sliding_layers[layer];
  }
  bool IsMoe(int layer) const {
    return layer < static_cast<int>(moe_layers.size()) && moe_layers[layer];
  }
};

// config.json "architectures"[0] and "model_type" of an architecture.
const char* HfArchitectureName(Architecture architecture);
const char* HfModelType(Architecture architecture);

// Names accepted in config.json "architectures" and GGUF general.architecture.
std::vector<std::string> SupportedArchitectureNames();

// Parses config.json. An unknown architecture is an error listing the supported ones.
absl::StatusOr<ModelConfig> ModelConfigFromHfJson(const std::string& path);

// Reads <arch>.* keys of a GGUF file.
absl::StatusOr<ModelConfig> ModelConfigFromGguf(const formats::GgufReader& gguf);

}  // namespace schism::model

#endif  // SCHISM_WORKER_RUNTIME_MODEL_CONFIG_H_
