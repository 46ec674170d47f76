#include "worker/runtime/trial_evaluator.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <optional>

#include "absl/status/status.h"
#include "common/refusal_markers.h"
#include "common/template/chat_template.h"
#include "worker/runtime/device.h"
#include "worker/runtime/directions.h"
#include "worker/runtime/perplexity.h"

namespace schism::model {

absl::StatusOr<std::vector<TokenIds>> EncodeChatPrompts(const LoadedModel& model,
                                                        const std::vector<std::string>& prompts,
                                                        const std::string& system_prompt,
                                                        const std::string& response_prefix) {
  auto tmpl = jinja::ChatTemplate::Create(model.chat_template, model.bos_token, model.eos_token);
  if (!tmpl.ok()) return tmpl.status();
  std::vector<TokenIds> out;
  out.reserve(prompts.size());
  for (const std::string& p : prompts) {
    std::vector<jinja::ChatMessage> messages;
    if (!system_prompt.empty()) messages.push_back({"system", system_prompt});
    messages.push_back({"user", p});
    auto text = tmpl->Render(messages, /*add_generation_prompt=*/true);
    if (!text.ok()) return text.status();
    out.push_back(model.tokenizer->Encode(*text + response_prefix, /*add_bos=*/true));
  }
  return out;
}

TrialEvaluator::TrialEvaluator(const LoadedModel& model, at::Tensor directions,
                               std::vector<TokenIds> refusal_prompts,
                               std::vector<TokenIds> kl_prompts, EvaluatorOptions options)
    : model_(model),
      directions_(std::move(directions)),
      refusal_prompts_(std::move(refusal_prompts)),
      kl_prompts_(std::move(kl_prompts)),
      options_(std::move(options)) {
  if (options_.markers.empty()) options_.markers = common::DefaultRefusalMarkers();
  pad_id_ =
      model_.tokenizer->spec().pad_id.value_or(model_.stop_ids.empty() ? 0 : model_.stop_ids[0]);
}

absl::StatusOr<std::unique_ptr<TrialEvaluator>> TrialEvaluator::Create(
    const LoadedModel& model, at::Tensor directions, std::vector<TokenIds> refusal_prompts,
    std::vector<TokenIds> kl_prompts, EvaluatorOptions options) {
  const ModelConfig& c = model.transformer->config();
  if (directions.dim() != 2 || directions.size(0) != c.num_layers + 1 ||
      directions.size(1) != c.hidden_size) {
    return absl::InvalidArgumentError(
        "refusal directions do not match the model (expected (layers+1) x hidden)");
  }
  if (options.batch_size <= 0 || options.max_response_length <= 0) {
    return absl::InvalidArgumentError("batch_size and max_response_length must be positive");
  }
  std::unique_ptr<TrialEvaluator> e(new TrialEvaluator(model, std::move(directions),
                                                       std::move(refusal_prompts),
                                                       std::move(kl_prompts), std::move(options)));
  c10::NoGradGuard no_grad;
  if (model.transformer->options().device().is_cpu()) KeepLargeBuffersOnTheHeap();
  e->directions_ = e->directions_.to(model.transformer->options().dtype(at::kFloat));
  const TensorParallel* tp = model.transformer->tensor_parallel();
  for (const LayerWeights& layer : model.transformer->weights().layers) {
    e->o_norms_.push_back(RowNorms(DenseWeight(layer.o_proj, at::kFloat), tp));
    e->down_norms_.push_back(layer.experts.empty()
                                 ? RowNorms(DenseWeight(layer.down_proj, at::kFloat), tp)
                                 : at::Tensor());
    e->expert_down_norms_.emplace_back();
    for (const ExpertWeights& expert : layer.experts)
      e->expert_down_norms_.back().push_back(
          RowNorms(DenseWeight(expert.down_proj, at::kFloat), tp));
  }
  if (e->options_.freeze_unmodified_layers) {
    const Transformer& t = *model.transformer;
    auto freeze = [&](const std::vector<TokenIds>& prompts, int64_t budget) {
      const size_t skip = e->options_.share_prefix ? CommonPrefixLength(prompts) : 0;
      return FrozenPrompts::Build(t, prompts, skip, e->options_.batch_size, e->pad_id_, budget);
    };
    // The refusal prompts first: their prefill is the larger share of a trial.
    e->frozen_refusal_ = freeze(e->refusal_prompts_, e->options_.frozen_budget_bytes);
    e->frozen_kl_ =
        freeze(e->kl_prompts_, e->options_.frozen_budget_bytes - e->frozen_refusal_.bytes());
  }
  if (!e->kl_prompts_.empty()) e->baseline_log_probs_ = e->KlLogProbs(nullptr, 1);
  return e;
}

AdapterBatch TrialEvaluator::BuildAdapters(
    const std::vector<common::TrialParameters>& trials) const {
  c10::NoGradGuard no_grad;
  const ModelConfig& c = model_.transformer->config();
  const int64_t k = static_cast<int64_t>(trials.size());
  AdapterBatch batch;
  batch.o_proj.resize(c.num_layers);
  batch.down_proj.resize(c.num_layers);
  batch.expert_down_proj.resize(c.num_layers);
  batch.first_layer.assign(k, c.num_layers);
  const bool full = options_.row_normalization == RowNormalization::kFull;
  for (const char* component : {common::kAttentionComponent, common::kMlpComponent}) {
    const bool attention = std::string(component) == common::kAttentionComponent;
    std::vector<std::vector<double>> lambdas;
    for (const auto& t : trials)
      lambdas.push_back(common::LayerWeights(t.components.at(component), c.num_layers));
    for (int layer = 0; layer < c.num_layers; ++layer) {
      bool any = false;
      for (const auto& l : lambdas) any |= l[layer] != 0;
      if (!any) continue;
      const LayerWeights& weights = model_.transformer->weights().layers[layer];
      // Each trial's direction at this layer, once for all the weights it adapts (every expert).
      std::vector<at::Tensor> directions(k);
      for (int64_t t = 0; t < k; ++t) {
        if (lambdas[t][layer] != 0)
          directions[t] = DirectionForLayer(directions_, trials[t], layer);
      }
      // One adapter set for W (k trials), from W's row norms.
      auto adapt = [&](const LinearWeights& linear, const at::Tensor& norms) {
        const at::Tensor w = DenseWeight(linear, at::kFloat);
        ComponentAdapters adapters;
        adapters.a = at::zeros({k, w.size(1)}, w.options());
        adapters.b = at::zeros({k, w.size(0)}, w.options());
        if (full) adapters.scale = at::ones({k, w.size(0)}, w.options());
        for (int64_t t = 0; t < k; ++t) {
          if (lambdas[t][layer] == 0) continue;
          batch.first_layer[t] = std::min(batch.first_layer[t], layer);
          MpoaAdapter adapter =
              ComputeMpoaAdapter(w, norms, directions[t], lambdas[t][layer],
                                 options_.row_normalization, model_.transformer->tensor_parallel());
          adapters.a[t] = adapter.a;
          adapters.b[t] = adapter.b;
          if (full) adapters.scale[t] = adapter.scale;
        }
        return adapters;
      };
      if (attention) {
        batch.o_proj[layer] = adapt(weights.o_proj, o_norms_[layer]);
      } else if (weights.experts.empty()) {
        batch.down_proj[layer] = adapt(weights.down_proj, down_norms_[layer]);
      } else {
        for (size_t e = 0; e < weights.experts.size(); ++e) {
          batch.expert_down_proj[layer].push_back(
              adapt(weights.experts[e].down_proj, expert_down_norms_[layer][e]));
        }
      }
    }
  }
  return batch;
}

std::vector<TrialEvaluator::Response> TrialEvaluator::Respond(
    const std::vector<common::TrialParameters>& trials, const std::vector<TokenIds>& prompts,
    bool early_stopping) {
  // The refusal prompts' stored states serve any caller that asks for exactly those prompts.
  const FrozenPrompts* frozen = prompts == refusal_prompts_ ? &frozen_refusal_ : nullptr;
  if (trials.empty()) return RespondWith(nullptr, 1, prompts, early_stopping, frozen);
  AdapterBatch adapters = BuildAdapters(trials);
  return RespondWith(&adapters, trials.size(), prompts, early_stopping, frozen);
}

std::vector<TrialEvaluator::Response> TrialEvaluator::RespondWith(
    const AdapterBatch* adapters, size_t k, const std::vector<TokenIds>& prompts,
    bool early_stopping, const FrozenPrompts* frozen) {
  // Every (trial, prompt) row, trial-major, decoded k * batch_size rows at a time (batch_size
  // prompts of each trial, as Heretic's batch of batch_size prompts for its one trial).
  std::vector<TokenIds> rows;
  GreedyOptions options;
  for (size_t t = 0; t < k; ++t) {
    for (const TokenIds& p : prompts) {
      options.frozen.source.push_back(static_cast<int64_t>(rows.size() % prompts.size()));
      rows.push_back(p);
      options.prompt_trial.push_back(static_cast<int64_t>(t));
    }
  }
  options.max_new_tokens = options_.max_response_length;
  options.stop_ids = model_.stop_ids;
  options.pad_id = pad_id_;
  options.adapters = adapters;
  options.batch_size = options_.batch_size * static_cast<int>(k);
  options.continuous = options_.continuous_batching;
  SharedPrefix prefix;
  if (options_.share_prefix && !prompts.empty()) {
    prefix = PrefillSharedPrefix(*model_.transformer, prompts[0], CommonPrefixLength(prompts),
                                 static_cast<int64_t>(k), adapters);
    if (prefix.length > 0) options.prefix = &prefix;
  }
  if (frozen != nullptr && frozen->depth() > 0 && frozen->skip() == prefix.length)
    options.frozen.states = frozen;
  if (early_stopping) {
    // Exact: a marker in the text so far stays in the full response (prefix-monotone
    // normalization); an empty text so far is not yet a verdict.
    options.stop_early = [&](size_t, const TokenIds& generated) {
      const std::string normalized = common::NormalizeResponse(model_.tokenizer->Decode(generated));
      return !normalized.empty() && common::IsRefusal(normalized, options_.markers);
    };
  }
  std::vector<TokenIds> responses = GreedyGenerate(*model_.transformer, rows, options);
  std::vector<Response> results(responses.size());
  for (size_t i = 0; i < responses.size(); ++i) {
    std::string text = model_.tokenizer->Decode(responses[i]);
    const bool refusal = common::IsRefusal(text, options_.markers);
    results[i] = {std::move(text), refusal};
  }
  return results;
}

at::Tensor TrialEvaluator::KlLogProbs(const AdapterBatch* adapters, size_t k) {
  const size_t n = kl_prompts_.size();
  SharedPrefix prefix;
  if (options_.share_prefix) {
    prefix =
        PrefillSharedPrefix(*model_.transformer, kl_prompts_[0], CommonPrefixLength(kl_prompts_),
                            static_cast<int64_t>(k), adapters);
  }
  std::optional<AdapterBatch> local;
  if (adapters != nullptr) local = *adapters;
  std::vector<at::Tensor> chunks;
  const size_t rows_per_pass = k * static_cast<size_t>(options_.batch_size);
  for (size_t start = 0; start < k * n; start += rows_per_pass) {
    const size_t end = std::min(k * n, start + rows_per_pass);
    std::vector<TokenIds> batch;
    std::vector<int64_t> row_trial;
    FrozenRows frozen;
    if (frozen_kl_.depth() > 0 && frozen_kl_.skip() == prefix.length) frozen.states = &frozen_kl_;
    for (size_t r = start; r < end; ++r) {
      batch.push_back(kl_prompts_[r % n]);
      row_trial.push_back(static_cast<int64_t>(r / n));
      frozen.source.push_back(static_cast<int64_t>(r % n));
    }
    if (local) local->row_trial = at::tensor(row_trial, at::kLong);
    chunks.push_back(at::log_softmax(
        PromptForward(*model_.transformer, batch, pad_id_, false, local ? &*local : nullptr,
                      prefix.length > 0 ? &prefix : nullptr, &frozen)
            .last_logits,
        -1));
  }
  return at::cat(chunks, 0);
}

std::vector<double> TrialEvaluator::Perplexities(const std::vector<common::TrialParameters>& trials,
                                                 const std::vector<TokenIds>& texts) {
  c10::NoGradGuard no_grad;
  if (trials.empty())
    return model::Perplexities(*model_.transformer, texts, pad_id_, nullptr, 1,
                               options_.batch_size);
  AdapterBatch adapters = BuildAdapters(trials);
  // batch_size texts of each trial per pass, as in the refusal and KL passes.
  return model::Perplexities(*model_.transformer, texts, pad_id_, &adapters, trials.size(),
                             options_.batch_size * static_cast<int>(trials.size()));
}

TrialScores TrialEvaluator::Baseline(std::vector<Response>* responses_out) {
  TrialScores scores;
  scores.refusal_prompts = static_cast<int>(refusal_prompts_.size());
  auto responses =
      RespondWith(nullptr, 1, refusal_prompts_, options_.early_stopping, &frozen_refusal_);
  for (const Response& r : responses) scores.refusals += r.refusal;
  if (responses_out != nullptr) *responses_out = std::move(responses);
  return scores;
}

std::vector<TrialScores> TrialEvaluator::Evaluate(
    const std::vector<common::TrialParameters>& trials, std::vector<Response>* responses_out) {
  c10::NoGradGuard no_grad;
  const size_t k = trials.size();
  std::vector<TrialScores> scores(k);
  if (k == 0) return scores;
  AdapterBatch adapters = BuildAdapters(trials);  // shared by the refusal and KL passes
  const auto responses =
      RespondWith(&adapters, k, refusal_prompts_, options_.early_stopping, &frozen_refusal_);
  for (size_t r = 0; r < responses.size(); ++r) {
    TrialScores& s = scores[r / refusal_prompts_.size()];
    s.refusal_prompts += 1;
    s.refusals += responses[r].refusal;
  }
  // KL of the first token against the baseline, batchmean over prompts, per trial.
  const size_t n = kl_prompts_.size();
  std::vector<double> kl_sum(k, 0.0);
  if (n > 0) {
    const at::Tensor log_probs =
        KlLogProbs(&adapters, k).view({static_cast<int64_t>(k), static_cast<int64_t>(n), -1});
    const at::Tensor base = baseline_log_probs_.unsqueeze(0);
    const at::Tensor kl =
        (base.exp() * (base - log_probs)).sum(-1).sum(-1).to(at::kCPU, at::kDouble);
    for (size_t t = 0; t < k; ++t) kl_sum[t] = kl[static_cast<int64_t>(t)].item<double>();
  }
  // KL >= 0; a trial that leaves the model untouched sums to a rounding error just below 0 in
  // float32 (TrialWorkerSteps caught it), which the coordinator would refuse as an invalid score.
  for (size_t t = 0; t < k; ++t)
    scores[t].kl_divergence = n > 0 ? std::max(0.0, kl_sum[t] / static_cast<double>(n)) : 0.0;
  if (responses_out != nullptr) *responses_out = responses;
  return scores;
}

}  // namespace schism::model
