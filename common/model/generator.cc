#include "common/model/generator.h"

#include <torch/torch.h>

#include <algorithm>
#include <optional>

namespace schism::model {

PaddedBatch LeftPad(const std::vector<TokenIds>& prompts, int32_t pad_id) {
  size_t longest = 0;
  for (const TokenIds& p : prompts) longest = std::max(longest, p.size());
  const int64_t B = static_cast<int64_t>(prompts.size()), T = static_cast<int64_t>(longest);
  PaddedBatch batch{torch::full({B, T}, pad_id, torch::kLong), torch::zeros({B, T}, torch::kLong)};
  auto ids = batch.input_ids.accessor<int64_t, 2>();
  auto mask = batch.attention_mask.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b) {
    const TokenIds& p = prompts[b];
    const int64_t offset = T - static_cast<int64_t>(p.size());
    for (size_t t = 0; t < p.size(); ++t) {
      ids[b][offset + t] = p[t];
      mask[b][offset + t] = 1;
    }
  }
  return batch;
}

ForwardOutput PromptForward(const Transformer& model, const std::vector<TokenIds>& prompts,
                            int32_t pad_id, bool capture_hidden_states,
                            const AdapterBatch* adapters) {
  PaddedBatch batch = LeftPad(prompts, pad_id);
  KvCache cache;
  return model.Forward(batch.input_ids, batch.attention_mask, &cache, capture_hidden_states, adapters);
}

std::vector<TokenIds> GreedyGenerate(const Transformer& model, const std::vector<TokenIds>& prompts,
                                     const GreedyOptions& options) {
  std::vector<TokenIds> generated(prompts.size());
  if (prompts.empty() || options.max_new_tokens <= 0) return generated;
  PaddedBatch batch = LeftPad(prompts, options.pad_id);
  KvCache cache;
  // Rows that finish leave the batch, so the adapters' row -> trial map shrinks with them.
  std::optional<AdapterBatch> adapters;
  if (options.adapters != nullptr) adapters = *options.adapters;
  const AdapterBatch* active_adapters = adapters ? &*adapters : nullptr;
  at::Tensor logits =
      model.Forward(batch.input_ids, batch.attention_mask, &cache, false, active_adapters).last_logits;

  std::vector<size_t> active(prompts.size());  // batch row -> prompt index
  for (size_t i = 0; i < active.size(); ++i) active[i] = i;
  for (int step = 0; step < options.max_new_tokens && !active.empty(); ++step) {
    auto next = logits.argmax(-1).to(torch::kLong);
    auto next_acc = next.accessor<int64_t, 1>();
    std::vector<int64_t> keep;
    for (size_t row = 0; row < active.size(); ++row) {
      const int32_t token = static_cast<int32_t>(next_acc[row]);
      const size_t prompt = active[row];
      bool done = std::find(options.stop_ids.begin(), options.stop_ids.end(), token) !=
                  options.stop_ids.end();
      if (!done) {
        generated[prompt].push_back(token);
        done = (options.stop_early && options.stop_early(prompt, generated[prompt])) ||
               step + 1 == options.max_new_tokens;
      }
      if (!done) keep.push_back(static_cast<int64_t>(row));
    }
    if (keep.empty()) break;
    if (keep.size() != active.size()) {  // finished rows leave the batch
      auto index = torch::tensor(keep, torch::kLong);
      for (auto& k : cache.keys) k = k.index_select(0, index);
      for (auto& v : cache.values) v = v.index_select(0, index);
      cache.attention_mask = cache.attention_mask.index_select(0, index);
      if (adapters) adapters->row_trial = adapters->row_trial.index_select(0, index);
      next = next.index_select(0, index);
      std::vector<size_t> still;
      for (int64_t row : keep) still.push_back(active[row]);
      active = std::move(still);
    }
    const int64_t B = static_cast<int64_t>(active.size());
    logits = model.Forward(next.view({B, 1}), torch::ones({B, 1}, torch::kLong), &cache, false,
                           active_adapters)
                 .last_logits;
  }
  return generated;
}

}  // namespace schism::model
