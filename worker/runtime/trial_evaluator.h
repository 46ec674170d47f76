// What a worker does for a batch of trials (docs/algorithm.md#evaluating-a-trial): builds each
// trial's MPOA adapters from the refusal directions, runs the refusal prompts (greedy, exact early
// stopping) and the KL prompts (first-token distribution against this worker's own baseline), k
// trials per batch.
#ifndef SCHISM_WORKER_RUNTIME_TRIAL_EVALUATOR_H_
#define SCHISM_WORKER_RUNTIME_TRIAL_EVALUATOR_H_

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/trial_parameters.h"
#include "worker/runtime/frozen_prompts.h"
#include "worker/runtime/generator.h"
#include "worker/runtime/model_loader.h"
#include "worker/runtime/mpoa.h"

namespace schism::model {

struct EvaluatorOptions {
  RowNormalization row_normalization = RowNormalization::kFull;
  int max_response_length = 100;
  int batch_size = 32;         // prompts of each trial per forward pass (k trials: k × rows)
  bool early_stopping = true;  // stop a response as soon as a marker appears
  // A finished response hands its cache slot to the next pending (prompt, trial) row at once
  // (false: static batches, rows idle until the whole batch is done). Verdicts are the same.
  bool continuous_batching = true;
  // The prompts' common head (system prompt, role tokens) is prefilled once per trial.
  bool share_prefix = true;
  // The unmodified model's states of the refusal and KL prompts are stored once (frozen_prompts.h)
  // and each trial's prefill starts at its first adapted layer, within this many bytes.
  bool freeze_unmodified_layers = true;
  int64_t frozen_budget_bytes = int64_t{2} << 30;
  std::vector<std::string> markers;  // empty: Heretic's defaults
};

struct TrialScores {
  int refusals = 0;
  int refusal_prompts = 0;
  double kl_divergence = 0;
};

// Renders each user prompt with the model's chat template as [system, user] + generation
// prompt, appends `response_prefix`, and tokenizes.
absl::StatusOr<std::vector<TokenIds>> EncodeChatPrompts(const LoadedModel& model,
                                                        const std::vector<std::string>& prompts,
                                                        const std::string& system_prompt,
                                                        const std::string& response_prefix);

class TrialEvaluator {
 public:
  // Computes the baseline first-token distributions of `kl_prompts` and the row norms of every
  // adapted weight. `model` must outlive the evaluator.
  static absl::StatusOr<std::unique_ptr<TrialEvaluator>> Create(
      const LoadedModel& model, at::Tensor directions, std::vector<TokenIds> refusal_prompts,
      std::vector<TokenIds> kl_prompts, EvaluatorOptions options);

  struct Response;

  // The unmodified model's scores (KL is 0 by definition); with `responses`, also its responses
  // to the refusal prompts.
  TrialScores Baseline(std::vector<Response>* responses = nullptr);

  struct Response {
    std::string text;
    bool refusal = false;
  };

  // Scores of k trials evaluated together; result i belongs to trials[i]. With `responses`, also
  // the refusal pass's responses, trial-major (as Respond returns them).
  std::vector<TrialScores> Evaluate(const std::vector<common::TrialParameters>& trials,
                                    std::vector<Response>* responses = nullptr);

  // Greedy responses of each trial to `prompts`, trial-major (all prompts of trial 0 first);
  // no trials means the unmodified model.
  std::vector<Response> Respond(const std::vector<common::TrialParameters>& trials,
                                const std::vector<TokenIds>& prompts, bool early_stopping);

  // Perplexity of `texts` (plain-text token ids) under each trial (perplexity.h); no trials means
  // the unmodified model (one value).
  std::vector<double> Perplexities(const std::vector<common::TrialParameters>& trials,
                                   const std::vector<TokenIds>& texts);

  // The refusal prompts, encoded (Respond with these reuses their stored states).
  const std::vector<TokenIds>& refusal_prompts() const { return refusal_prompts_; }

  // Bytes held by the stored states of the refusal and KL prompts (frozen_prompts.h).
  int64_t frozen_bytes() const { return frozen_refusal_.bytes() + frozen_kl_.bytes(); }

  // The k-trial adapters; exposed for tests.
  AdapterBatch BuildAdapters(const std::vector<common::TrialParameters>& trials) const;

 private:
  TrialEvaluator(const LoadedModel& model, at::Tensor directions,
                 std::vector<TokenIds> refusal_prompts, std::vector<TokenIds> kl_prompts,
                 EvaluatorOptions options);
  // Respond with adapters already built for `k` trials (null: the unmodified model).
  // `frozen`: stored states of `prompts`, or null.
  std::vector<Response> RespondWith(const AdapterBatch* adapters, size_t k,
                                    const std::vector<TokenIds>& prompts, bool early_stopping,
                                    const FrozenPrompts* frozen);
  // First-token log-probabilities (rows, vocab) of k trials on the KL prompts, trial-major.
  at::Tensor KlLogProbs(const AdapterBatch* adapters, size_t k);
  const LoadedModel& model_;
  at::Tensor directions_;
  std::vector<TokenIds> refusal_prompts_, kl_prompts_;
  EvaluatorOptions options_;
  FrozenPrompts frozen_refusal_, frozen_kl_;                // empty unless freeze_unmodified_layers
  at::Tensor baseline_log_probs_;                           // (n_kl, vocab) float32
  std::vector<at::Tensor> o_norms_, down_norms_;            // row norms per layer
  std::vector<std::vector<at::Tensor>> expert_down_norms_;  // per layer, per expert (MoE layers)
  int32_t pad_id_ = 0;
};

}  // namespace schism::model

#endif  // SCHISM_WORKER_RUNTIME_TRIAL_EVALUATOR_H_
