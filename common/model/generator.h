// Batched inference on top of Transformer: left padding, next-token logits, greedy decoding
// with per-row stopping (rows that finish leave the batch, so later steps cost less).
#ifndef SCHISM_COMMON_MODEL_GENERATOR_H_
#define SCHISM_COMMON_MODEL_GENERATOR_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "common/model/transformer.h"

namespace schism::model {

using TokenIds = std::vector<int32_t>;

struct PaddedBatch {
  at::Tensor input_ids;       // (B, T) int64, left-padded
  at::Tensor attention_mask;  // (B, T) int64, 0 on padding
};

PaddedBatch LeftPad(const std::vector<TokenIds>& prompts, int32_t pad_id);

// Next-token logits (B, vocab) float32 for each prompt, optionally with the hidden states at the
// last prompt token (see ForwardOutput).
ForwardOutput PromptForward(const Transformer& model, const std::vector<TokenIds>& prompts,
                            int32_t pad_id, bool capture_hidden_states = false,
                            const AdapterBatch* adapters = nullptr);

struct GreedyOptions {
  int max_new_tokens = 32;
  std::vector<int32_t> stop_ids;  // a row ends after emitting one of these (not included)
  int32_t pad_id = 0;
  // Called after each new token of a row with everything it generated so far; returning true
  // ends the row early (the refusal scorer stops as soon as a marker appears).
  std::function<bool(size_t row, const TokenIds& generated)> stop_early;
  // Optional trial adapters; adapters->row_trial has one entry per prompt.
  const AdapterBatch* adapters = nullptr;
};

// Greedy continuations of each prompt (batched together).
std::vector<TokenIds> GreedyGenerate(const Transformer& model, const std::vector<TokenIds>& prompts,
                                     const GreedyOptions& options);

}  // namespace schism::model

#endif  // SCHISM_COMMON_MODEL_GENERATOR_H_
