// The decoder-only transformer forward pass (Llama family: Llama 2/3, SmolLM2, Mistral, Qwen2,
// Qwen3; Gemma 3 with its sandwich norms and sliding-window layers): batched left-padded prompts,
// attention masks, KV cache, hidden-state capture.
//
// Tensor shapes: B batch rows, T new positions, S all positions so far (cache + new), H hidden.
#ifndef SCHISM_WORKER_RUNTIME_TRANSFORMER_H_
#define SCHISM_WORKER_RUNTIME_TRANSFORMER_H_

#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>

#include <memory>
#include <optional>
#include <vector>

#include "worker/runtime/model_config.h"
#include "worker/runtime/nf4.h"
#include "worker/runtime/packed_gemm.h"
#include "worker/runtime/tensor_parallel.h"

namespace schism::model {

// y = x Wᵀ + b. The weight is (out, in) in the compute dtype, or (4-bit workers) only its packed
// NF4 codes, dequantized by each forward pass that uses them.
struct LinearWeights {
  at::Tensor weight;  // undefined when packed
  Nf4Tensor nf4;      // nf4.packed defined when packed
  at::Tensor bias;    // undefined when absent
  // float32 CPU models: `weight` also in MKL's GEMM layout, for products of many rows.
  std::shared_ptr<const PackedWeight> mkl_packed;
};

// The (out, in) weight in `dtype`: the dense tensor, or the packed codes dequantized.
at::Tensor DenseWeight(const LinearWeights& w, c10::ScalarType dtype);

// One SwiGLU expert of a mixture-of-experts layer.
struct ExpertWeights {
  LinearWeights gate_proj, up_proj, down_proj;
};

struct LayerWeights {
  at::Tensor attn_norm;  // (H)
  LinearWeights q_proj, k_proj, v_proj, o_proj;
  at::Tensor q_norm, k_norm;  // (head_dim), Qwen3 and Gemma 3
  at::Tensor post_attn_norm;  // (H), Gemma 3: on the attention output before the residual add
  at::Tensor mlp_norm;        // (H)
  LinearWeights gate_proj, up_proj, down_proj;  // dense MLP layers
  at::Tensor post_mlp_norm;            // (H), Gemma 3: on the MLP output before the residual add
  at::Tensor router;                   // (num_experts, H), mixture-of-experts layers only
  std::vector<ExpertWeights> experts;  // mixture-of-experts layers only
};

struct ModelWeights {
  at::Tensor embed_tokens;  // (vocab, H)
  std::vector<LayerWeights> layers;
  at::Tensor final_norm;         // (H)
  at::Tensor lm_head;            // (vocab, H); the same storage as embed_tokens when tied
  at::Tensor rope_freq_factors;  // (head_dim/2) divisors of the RoPE frequencies, or undefined
};

// Keys and values of up to `slots()` sequences ("slots"), each preallocated to `capacity()`
// positions, so a step writes in place instead of concatenating. Slot s uses columns
// [0, length[s]); columns that hold left padding are marked invalid and never attended to.
// Slots are independent: continuous batching refills one while the others keep decoding.
class KvCache {
 public:
  KvCache() = default;
  // Allocates `kv_heads` heads a layer (a tensor-parallel rank's share), on the device and in
  // the dtype of `options`.
  KvCache(const ModelConfig& config, int64_t kv_heads, int64_t slots, int64_t capacity,
          const at::TensorOptions& options);

  int64_t slots() const { return static_cast<int64_t>(length.size()); }
  int64_t capacity() const { return valid.defined() ? valid.size(1) : 0; }
  // Frees slot s for a new sequence.
  void Reset(int64_t slot);
  // Slot `to` becomes a copy of slot `from` (compaction keeps the live slots in front).
  void CopySlot(int64_t from, int64_t to) { CopySlotFrom(*this, from, to); }
  // Slot `to` becomes a copy of slot `from` of `source` (same model; a shared prefix).
  void CopySlotFrom(const KvCache& source, int64_t from, int64_t to);

  std::vector<at::Tensor> keys;  // per layer (slots, capacity, kv_heads, head_dim)
  std::vector<at::Tensor> values;
  at::Tensor valid;                // (slots, capacity) bool: a real token at that column
  at::Tensor column_position;      // (slots, capacity) int64: that column's RoPE position
  std::vector<int64_t> length;     // per slot: columns in use
  std::vector<int64_t> positions;  // per slot: real tokens so far (the next RoPE position)
};

// Rank-1 adapters of k trials on the attention and MLP output projections
// (docs/algorithm.md#multi-trial-batching, multi-trial batching): row b of the batch runs trial
// row_trial[b], and each adapted layer computes s_t ∘ (Wx + b_t (a_tᵀ x)). A trial that leaves a
// layer alone has a = b = 0, s = 1.
struct ComponentAdapters {
  at::Tensor a;      // (k, in); undefined: no trial adapts this layer
  at::Tensor b;      // (k, out)
  at::Tensor scale;  // (k, out); undefined unless row_normalization = full
};

struct AdapterBatch {
  std::vector<ComponentAdapters> o_proj;     // per layer
  std::vector<ComponentAdapters> down_proj;  // per layer (dense MLP layers)
  // Per layer, per expert: mixture-of-experts layers adapt every expert's down projection, each
  // with its own A (vᵀW_e) and row norms; empty for dense layers.
  std::vector<std::vector<ComponentAdapters>> expert_down_proj;
  at::Tensor row_trial;  // (B) int64: the trial of each batch row
  // Per trial: the first layer it adapts (num_layers when none). Layers below it compute what
  // the unmodified model computes, bit for bit (a zero adapter adds 0 and scales by 1).
  std::vector<int> first_layer;
};

// Where a forward pass starts when the layers below `first_layer` are known to compute what the
// unmodified model computes ("frozen layers"): the hidden states entering `first_layer` and the
// keys and values those lower layers give the new positions, stored once per prompt set.
struct ForwardStart {
  int first_layer = 0;
  at::Tensor hidden;                     // (B, T, H) in the compute dtype
  std::vector<at::Tensor> keys, values;  // first_layer tensors (B*T, kv_heads*head_dim)
};

struct ForwardOptions {
  // The last position's hidden states (ForwardOutput::hidden_states).
  bool capture_hidden_states = false;
  // Every position's input to every layer, and the final residual (ForwardOutput::layer_inputs).
  bool capture_layer_inputs = false;
  // Only the last of those (layer_inputs then holds one tensor): what perplexity needs, without
  // keeping every layer's (B, T, H) alive.
  bool capture_final_residual = false;
  const AdapterBatch* adapters = nullptr;  // k trials' rank-1 adapters, or none
  const ForwardStart* start = nullptr;     // start above the embeddings (capture not allowed)
  // Only the greedy choice at the last position (ForwardOutput::next_tokens), not the logits:
  // what a decode step needs, and cheaper (GreedyTokens).
  bool greedy_tokens_only = false;
};

struct ForwardOutput {
  at::Tensor last_logits;  // (B, vocab) float32, at the last position, on the model's device
  at::Tensor next_tokens;  // with greedy_tokens_only (then no last_logits): (B) int64 on the CPU
  // With capture: N+1 tensors (B, H) float32 at the last position: the embedding output, then
  // each layer's output, the last one after the final norm (as Hugging Face returns them).
  std::vector<at::Tensor> hidden_states;
  // With capture_layer_inputs: N+1 tensors (B, T, H) in the compute dtype: the input of each
  // layer, then the residual stream after the last layer (before the final norm). With
  // capture_final_residual: that last one only.
  std::vector<at::Tensor> layer_inputs;
};

class Transformer {
 public:
  // With `tensor_parallel`, `weights` are this rank's shard (ShardForTensorParallel's layout).
  Transformer(ModelConfig config, ModelWeights weights,
              std::shared_ptr<TensorParallel> tensor_parallel = nullptr);

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  // The process group this rank computes in, or null for a whole model in one process.
  TensorParallel* tensor_parallel() const { return tensor_parallel_.get(); }
  // This rank's attention heads and key/value heads (all of them without tensor parallelism).
  int64_t local_heads() const { return config_.num_heads / world_size(); }
  int64_t local_kv_heads() const { return config_.num_kv_heads / world_size(); }

  // The device and dtype every weight (and every activation) lives in.
  at::TensorOptions options() const { return weights_.embed_tokens.options(); }
  // A cache for this model, on its device and in its compute dtype.
  KvCache NewCache(int64_t slots, int64_t capacity) const;

  // Runs T new positions for B rows; row b extends cache slot slots[b] (B distinct slots, each
  // with room for T more columns). `input_ids` (B, T) int64; `attention_mask` (B, T) marks real
  // tokens (left padding = leading zeros); both may live on the CPU. Attention goes through
  // at::scaled_dot_product_attention (grouped-query heads natively).
  ForwardOutput Forward(const at::Tensor& input_ids, const at::Tensor& attention_mask,
                        KvCache* cache, const std::vector<int64_t>& slots,
                        const ForwardOptions& options = {}) const;

  // The argmax of the float32 logits of `last` (R, H), the final-normed states: (R) int64 on
  // the CPU. On a CPU with bfloat16 instructions a float32 model screens the vocabulary with a
  // bfloat16 copy of lm_head (half the bytes, AMX), then computes in float32 only the tokens
  // whose screened logit lies within the screen's proven error bound of the row's best; the
  // answer is the float32 argmax (ties to the lowest id), up to float32 summation order.
  at::Tensor GreedyTokens(const at::Tensor& last) const;
  // (R, vocab) float32 logits of residual-stream states (R, H) taken before the final norm (the
  // last of ForwardOutput::layer_inputs): the final norm, lm_head and any softcap, as Forward
  // applies them at the last position.
  at::Tensor LogitsOfResidual(const at::Tensor& residual) const;
  // Whether GreedyTokens screens in bfloat16 (else: full float32 logits, then argmax).
  bool screens_lm_head() const { return lm_head_screen_.defined(); }
  // Bytes of the decoder weights also held in MKL's GEMM layout (float32 CPU models, up to
  // kMaxPackedBytes; 0 where libtorch has no MKL).
  int64_t mkl_packed_bytes() const { return mkl_packed_bytes_; }
  static constexpr int64_t kMaxPackedBytes = int64_t{4} << 30;

 private:
  int world_size() const { return tensor_parallel_ ? tensor_parallel_->world_size() : 1; }
  // (R, vocab) float32 logits of the final-normed states `last` (R, H), softcapped if Gemma's.
  at::Tensor LastLogits(const at::Tensor& last) const;

  ModelConfig config_;
  ModelWeights weights_;
  std::shared_ptr<TensorParallel> tensor_parallel_;
  at::Tensor inv_freq_;  // (head_dim/2) float32, on the model's device
  at::Tensor
      local_inv_freq_;  // Gemma 3's sliding-window layers (their own RoPE base), or undefined
  at::Tensor lm_head_screen_;     // (vocab, H) bfloat16 copy of lm_head, or undefined
  at::Tensor lm_head_row_norms_;  // (vocab) float32 L2 norms of lm_head's rows, with the screen
  int64_t mkl_packed_bytes_ = 0;
};

}  // namespace schism::model

#endif  // SCHISM_WORKER_RUNTIME_TRANSFORMER_H_
