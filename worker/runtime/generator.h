// Batched inference on top of Transformer: left padding, next-token logits, a shared prompt
// prefix prefilled once, and greedy decoding with continuous batching (a row that finishes
// hands its cache slot to the next pending prompt at once).
#ifndef SCHISM_WORKER_RUNTIME_GENERATOR_H_
#define SCHISM_WORKER_RUNTIME_GENERATOR_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "worker/runtime/transformer.h"

namespace schism::model {

using TokenIds = std::vector<int32_t>;
class FrozenPrompts;

// Prompts whose unmodified-model states are stored (frozen_prompts.h): source[i] is prompt i's
// index in `states`. A prefill then starts at the first layer its rows' trials adapt.
struct FrozenRows {
  const FrozenPrompts* states = nullptr;
  std::vector<int64_t> source;
};

struct PaddedBatch {
  at::Tensor input_ids;       // (B, T) int64, left-padded, on the CPU
  at::Tensor attention_mask;  // (B, T) int64, 0 on padding
};

// `skip` leading tokens of every prompt are left out (they are in the cache already).
PaddedBatch LeftPad(const std::vector<const TokenIds*>& prompts, int32_t pad_id, size_t skip = 0);
PaddedBatch LeftPad(const std::vector<TokenIds>& prompts, int32_t pad_id);

// The head every prompt of a set shares (the chat template's system prompt and role tokens),
// run once per trial; rows then start from a copy of their trial's slot instead of recomputing
// it. Exact: causal attention makes a prefix's keys and values independent of what follows.
struct SharedPrefix {
  size_t length = 0;  // tokens; 0 = nothing shared
  KvCache cache;      // slot t: the prefix under trial t (slot 0 for the unmodified model)
};

// The longest common token prefix of `prompts`, kept one token short of the shortest prompt.
size_t CommonPrefixLength(const std::vector<TokenIds>& prompts);

// Prefills prompts[0]'s first `length` tokens for `trials` trials (`adapters` may be null: the
// unmodified model, one slot). Returns an empty prefix when `length` is 0.
SharedPrefix PrefillSharedPrefix(const Transformer& model, const TokenIds& prompt, size_t length,
                                 int64_t trials, const AdapterBatch* adapters);

// Next-token logits (B, vocab) float32 for each prompt, optionally with the hidden states at the
// last prompt token (see ForwardOutput). With `prefix`, every prompt starts with its tokens and
// row b starts from slot adapters->row_trial[b] (0 without adapters) of it.
// With `frozen` (which needs the same prefix), the layers no row's trial adapts are not run.
ForwardOutput PromptForward(const Transformer& model, const std::vector<TokenIds>& prompts,
                            int32_t pad_id, bool capture_hidden_states = false,
                            const AdapterBatch* adapters = nullptr,
                            const SharedPrefix* prefix = nullptr,
                            const FrozenRows* frozen = nullptr);

struct GreedyOptions {
  int max_new_tokens = 32;
  std::vector<int32_t> stop_ids;  // a row ends after emitting one of these (not included)
  int32_t pad_id = 0;
  // Called after each new token of a row with everything it generated so far; returning true
  // ends the row early (the refusal scorer stops as soon as a marker appears).
  std::function<bool(size_t row, const TokenIds& generated)> stop_early;
  // Optional trial adapters; prompt_trial[i] is the trial of prompts[i] (empty: trial 0).
  const AdapterBatch* adapters = nullptr;
  std::vector<int64_t> prompt_trial;
  // Rows decoded together (cache slots); 0 = all prompts at once.
  int batch_size = 0;
  // true: a finished row's slot is refilled at once with the next pending prompt, longest prompts
  // first (less left padding per prefill). false: static batches in prompt order, the next batch
  // starts when the whole current one has finished (the plain path).
  bool continuous = true;
  // Optional shared prefix of every prompt (slot = the prompt's trial).
  const SharedPrefix* prefix = nullptr;
  // Optional stored states of the prompts (frozen.states->skip() must equal the prefix length).
  FrozenRows frozen;
};

// Greedy continuations of each prompt.
std::vector<TokenIds> GreedyGenerate(const Transformer& model, const std::vector<TokenIds>& prompts,
                                     const GreedyOptions& options);

}  // namespace schism::model

#endif  // SCHISM_WORKER_RUNTIME_GENERATOR_H_
