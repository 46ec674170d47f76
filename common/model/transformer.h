// The decoder-only transformer forward pass (Llama family: Llama 2/3, SmolLM2, Mistral, Qwen2,
// Qwen3): batched left-padded prompts, attention masks, KV cache, hidden-state capture.
//
// Tensor shapes: B batch rows, T new positions, S all positions so far (cache + new), H hidden.
#ifndef SCHISM_COMMON_MODEL_TRANSFORMER_H_
#define SCHISM_COMMON_MODEL_TRANSFORMER_H_

#include <ATen/core/Tensor.h>

#include <optional>
#include <vector>

#include "common/model/model_config.h"

namespace schism::model {

// y = x Wᵀ + b. The weight is (out, in) in the compute dtype.
struct LinearWeights {
  at::Tensor weight;
  at::Tensor bias;  // undefined when absent
};

struct LayerWeights {
  at::Tensor attn_norm;  // (H)
  LinearWeights q_proj, k_proj, v_proj, o_proj;
  at::Tensor q_norm, k_norm;  // (head_dim), Qwen3 only
  at::Tensor mlp_norm;        // (H)
  LinearWeights gate_proj, up_proj, down_proj;
};

struct ModelWeights {
  at::Tensor embed_tokens;  // (vocab, H)
  std::vector<LayerWeights> layers;
  at::Tensor final_norm;  // (H)
  at::Tensor lm_head;     // (vocab, H); the same storage as embed_tokens when tied
  at::Tensor rope_freq_factors;  // (head_dim/2) divisors of the RoPE frequencies, or undefined
};

// Keys and values of every layer for the positions processed so far.
struct KvCache {
  std::vector<at::Tensor> keys;    // per layer (B, kv_heads, S, head_dim)
  std::vector<at::Tensor> values;
  at::Tensor attention_mask;       // (B, S) 1 = real token, 0 = padding
  int64_t length() const { return attention_mask.defined() ? attention_mask.size(1) : 0; }
};

// Rank-1 adapters of k trials on the attention and MLP output projections (DESIGN.md §4,
// multi-trial batching): row b of the batch runs trial row_trial[b], and each adapted layer
// computes s_t ∘ (Wx + b_t (a_tᵀ x)). A trial that leaves a layer alone has a = b = 0, s = 1.
struct ComponentAdapters {
  at::Tensor a;      // (k, in); undefined: no trial adapts this layer
  at::Tensor b;      // (k, out)
  at::Tensor scale;  // (k, out); undefined unless row_normalization = full
};

struct AdapterBatch {
  std::vector<ComponentAdapters> o_proj;     // per layer
  std::vector<ComponentAdapters> down_proj;  // per layer
  at::Tensor row_trial;                      // (B) int64: the trial of each batch row
};

struct ForwardOutput {
  at::Tensor last_logits;  // (B, vocab) float32, at the last position
  // With capture: N+1 tensors (B, H) float32 at the last position: the embedding output, then
  // each layer's output, the last one after the final norm (as Hugging Face returns them).
  std::vector<at::Tensor> hidden_states;
};

class Transformer {
 public:
  Transformer(ModelConfig config, ModelWeights weights);

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  ModelWeights& mutable_weights() { return weights_; }

  // Runs T new positions for B rows. `input_ids` (B, T) int64; `attention_mask` (B, T) marks
  // real tokens (left padding = leading zeros). Appends to `cache`, which must be empty or come
  // from earlier calls with the same batch.
  ForwardOutput Forward(const at::Tensor& input_ids, const at::Tensor& attention_mask,
                        KvCache* cache, bool capture_hidden_states = false,
                        const AdapterBatch* adapters = nullptr) const;

 private:
  at::Tensor Attention(const LayerWeights& layer, const at::Tensor& x, const at::Tensor& cos,
                       const at::Tensor& sin, const at::Tensor& bias, at::Tensor* cached_k,
                       at::Tensor* cached_v, const ComponentAdapters* o_adapter,
                       const at::Tensor& row_trial) const;

  ModelConfig config_;
  ModelWeights weights_;
  at::Tensor inv_freq_;  // (head_dim/2) float32
};

}  // namespace schism::model

#endif  // SCHISM_COMMON_MODEL_TRANSFORMER_H_
