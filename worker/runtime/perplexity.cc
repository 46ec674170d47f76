#include "worker/runtime/perplexity.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <cmath>
#include <optional>

namespace schism::model {

std::vector<double> Perplexities(const Transformer& model, const std::vector<TokenIds>& texts,
                                 int32_t pad_id, const AdapterBatch* adapters, size_t trials,
                                 int batch_size) {
  c10::NoGradGuard no_grad;
  if (adapters == nullptr) trials = 1;
  const size_t n = texts.size(), rows = trials * n;
  const size_t step = batch_size > 0 ? static_cast<size_t>(batch_size) : std::max<size_t>(rows, 1);
  std::vector<double> nll(trials, 0.0);
  std::vector<int64_t> predicted(trials, 0);
  std::optional<AdapterBatch> local;
  if (adapters != nullptr) local = *adapters;
  for (size_t start = 0; start < rows; start += step) {
    const size_t end = std::min(rows, start + step);
    std::vector<const TokenIds*> batch;
    std::vector<int64_t> row_trial, slots;
    size_t longest = 0;
    for (size_t r = start; r < end; ++r) {
      batch.push_back(&texts[r % n]);
      row_trial.push_back(static_cast<int64_t>(r / n));
      slots.push_back(static_cast<int64_t>(r - start));
      longest = std::max(longest, texts[r % n].size());
    }
    if (longest < 2) continue;
    const int64_t B = static_cast<int64_t>(batch.size());
    const PaddedBatch padded = LeftPad(batch, pad_id);
    KvCache cache = model.NewCache(B, static_cast<int64_t>(longest));
    ForwardOptions options;
    options.capture_final_residual = true;
    if (local) {
      local->row_trial = at::tensor(row_trial, at::kLong);
      options.adapters = &*local;
    }
    const ForwardOutput out =
        model.Forward(padded.input_ids, padded.attention_mask, &cache, slots, options);
    const at::Tensor& residual = out.layer_inputs.back();  // (B, T, H)
    const int64_t T = residual.size(1);
    const at::Tensor ids = padded.input_ids.to(residual.device());
    for (int64_t b = 0; b < B; ++b) {
      const int64_t len = static_cast<int64_t>(batch[b]->size());
      if (len < 2) continue;
      // Left-padded: the text fills the last `len` columns; column c predicts column c + 1.
      const at::Tensor logits = model.LogitsOfResidual(residual[b].slice(0, T - len, T - 1));
      const at::Tensor targets = ids[b].slice(0, T - len + 1, T).unsqueeze(1);
      const double sum = -at::log_softmax(logits, -1).gather(1, targets).sum().item<double>();
      nll[row_trial[b]] += sum;
      predicted[row_trial[b]] += len - 1;
    }
  }
  std::vector<double> out(trials);
  for (size_t t = 0; t < trials; ++t)
    out[t] = predicted[t] > 0 ? std::exp(nll[t] / static_cast<double>(predicted[t])) : 1.0;
  return out;
}

}  // namespace schism::model
