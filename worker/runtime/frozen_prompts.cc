#include "worker/runtime/frozen_prompts.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <algorithm>

namespace schism::model {

FrozenPrompts FrozenPrompts::Build(const Transformer& model, const std::vector<TokenIds>& prompts,
                                   size_t skip, int batch_size, int32_t pad_id,
                                   int64_t budget_bytes) {
  c10::NoGradGuard no_grad;
  FrozenPrompts frozen;
  if (prompts.empty()) return frozen;
  const ModelConfig& c = model.config();
  const int64_t H = c.hidden_size, kvd = model.local_kv_heads() * c.head_dim;
  const int64_t element = model.options().dtype().itemsize();
  int64_t tokens = 0;
  for (const TokenIds& p : prompts) tokens += static_cast<int64_t>(p.size() - skip);
  // Layer inputs 0..depth and the keys and values of layers 0..depth-1.
  auto cost = [&](int64_t d) { return tokens * element * ((d + 1) * H + d * 2 * kvd); };
  int depth = c.num_layers;
  while (depth > 0 && cost(depth) > budget_bytes) --depth;
  if (depth == 0) return frozen;
  frozen.depth_ = depth;
  frozen.skip_ = skip;
  frozen.bytes_ = cost(depth);

  const SharedPrefix prefix = PrefillSharedPrefix(model, prompts[0], skip, 1, nullptr);
  std::vector<std::vector<at::Tensor>> hidden(depth + 1), keys(depth), values(depth);
  int64_t row = 0;
  const size_t step = batch_size > 0 ? static_cast<size_t>(batch_size) : prompts.size();
  for (size_t begin = 0; begin < prompts.size(); begin += step) {
    const size_t end = std::min(prompts.size(), begin + step);
    std::vector<const TokenIds*> group;
    size_t longest = 0;
    for (size_t i = begin; i < end; ++i) {
      group.push_back(&prompts[i]);
      longest = std::max(longest, prompts[i].size());
    }
    const int64_t B = static_cast<int64_t>(group.size());
    KvCache cache = model.NewCache(B, static_cast<int64_t>(longest));
    if (skip > 0) {
      for (int64_t b = 0; b < B; ++b) cache.CopySlotFrom(prefix.cache, 0, b);
    }
    const PaddedBatch batch = LeftPad(group, pad_id, skip);
    ForwardOptions options;
    options.capture_layer_inputs = true;
    std::vector<int64_t> slots(B);
    for (int64_t b = 0; b < B; ++b) slots[b] = b;
    const ForwardOutput out =
        model.Forward(batch.input_ids, batch.attention_mask, &cache, slots, options);
    // The real tokens of each row, prompt by prompt: positions (b, t) and cache columns.
    const int64_t T = batch.input_ids.size(1), capacity = cache.capacity();
    std::vector<int64_t> positions, columns;
    for (int64_t b = 0; b < B; ++b) {
      const int64_t n = static_cast<int64_t>(group[b]->size() - skip);
      frozen.offset_.push_back(row);
      frozen.length_.push_back(n);
      row += n;
      for (int64_t t = T - n; t < T; ++t) {
        positions.push_back(b * T + t);
        columns.push_back(b * capacity + static_cast<int64_t>(skip) + t);
      }
    }
    const auto device = model.options().device();
    const at::Tensor position_index = at::tensor(positions, at::kLong).to(device);
    const at::Tensor column_index = at::tensor(columns, at::kLong).to(device);
    for (int l = 0; l <= depth; ++l) {
      hidden[l].push_back(out.layer_inputs[l].reshape({B * T, H}).index_select(0, position_index));
    }
    for (int l = 0; l < depth; ++l) {
      keys[l].push_back(cache.keys[l].view({-1, kvd}).index_select(0, column_index));
      values[l].push_back(cache.values[l].view({-1, kvd}).index_select(0, column_index));
    }
  }
  for (int l = 0; l <= depth; ++l) frozen.hidden_.push_back(at::cat(hidden[l], 0));
  for (int l = 0; l < depth; ++l) {
    frozen.keys_.push_back(at::cat(keys[l], 0));
    frozen.values_.push_back(at::cat(values[l], 0));
  }
  return frozen;
}

ForwardStart FrozenPrompts::Start(const std::vector<int64_t>& sources, int first_layer) const {
  TORCH_CHECK(first_layer >= 0 && first_layer <= depth_, "FrozenPrompts: layer ", first_layer,
              " is above the ", depth_, " stored");
  int64_t T = 0;
  for (int64_t s : sources) T = std::max(T, length_.at(s));
  // Row-major (row, column) → stored token; padding columns borrow the row's first token (their
  // outputs are never attended to or read).
  std::vector<int64_t> gather;
  gather.reserve(sources.size() * T);
  for (int64_t s : sources) {
    const int64_t pad = T - length_[s];
    for (int64_t t = 0; t < T; ++t) gather.push_back(offset_[s] + std::max<int64_t>(0, t - pad));
  }
  const at::Tensor index = at::tensor(gather, at::kLong).to(hidden_[0].device());
  ForwardStart start;
  start.first_layer = first_layer;
  start.hidden = hidden_[first_layer].index_select(0, index).view(
      {static_cast<int64_t>(sources.size()), T, -1});
  for (int l = 0; l < first_layer; ++l) {
    start.keys.push_back(keys_[l].index_select(0, index));
    start.values.push_back(values_[l].index_select(0, index));
  }
  return start;
}

}  // namespace schism::model
