// States of the unmodified model on a fixed prompt set, kept so that trials need not recompute
// the layers they leave alone ("frozen layers"). MPOA adapts only the layers inside each trial's
// weight window (docs/algorithm.md#weight-kernel), so below a trial's first adapted layer every
// prompt token's keys, values and residual stream are the unmodified model's, the same in every
// trial. They are computed once per worker; a trial's prefill then starts at its first adapted
// layer. Decoded tokens differ per trial and always run every layer.
//
// Memory: tokens × (H + 2·kv_heads·head_dim) × dtype bytes per stored layer; `depth` stops at
// the layers a byte budget allows.
#ifndef SCHISM_WORKER_RUNTIME_FROZEN_PROMPTS_H_
#define SCHISM_WORKER_RUNTIME_FROZEN_PROMPTS_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "worker/runtime/generator.h"
#include "worker/runtime/transformer.h"

namespace schism::model {

class FrozenPrompts {
 public:
  FrozenPrompts() = default;

  // Runs the unmodified model over `prompts`, `batch_size` at a time, and keeps the states of
  // every token after the first `skip` (a shared prefix every prompt starts with, prefilled
  // separately) for the lowest layers that fit in `budget_bytes` (all of them and the final
  // residual when they fit). depth() is 0 when not even one layer fits.
  static FrozenPrompts Build(const Transformer& model, const std::vector<TokenIds>& prompts,
                             size_t skip, int batch_size, int32_t pad_id, int64_t budget_bytes);

  // Layers whose states are kept: a forward pass can start at any layer up to depth().
  int depth() const { return depth_; }
  size_t skip() const { return skip_; }
  size_t prompts() const { return length_.size(); }
  int64_t bytes() const { return bytes_; }

  // The start of a forward pass at `first_layer` (≤ depth()) for prompts `sources` (indices into
  // the set), left-padded as LeftPad(prompts, pad, skip()) pads them.
  ForwardStart Start(const std::vector<int64_t>& sources, int first_layer) const;

 private:
  int depth_ = 0;
  size_t skip_ = 0;
  int64_t bytes_ = 0;
  std::vector<int64_t> offset_, length_;   // per prompt: its first row and token count below
  std::vector<at::Tensor> hidden_;         // depth+1 (or depth) tensors (tokens, H): layer inputs
  std::vector<at::Tensor> keys_, values_;  // depth tensors (tokens, kv_heads·head_dim)
};

}  // namespace schism::model

#endif  // SCHISM_WORKER_RUNTIME_FROZEN_PROMPTS_H_
