#include "worker/runtime/generator.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <optional>

#include "worker/runtime/frozen_prompts.h"

namespace schism::model {
namespace {

std::vector<int64_t> Iota(int64_t n) {
  std::vector<int64_t> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = i;
  return v;
}

// The trial of each row, read on the host (row_trial may live on the model's device).
std::vector<int64_t> RowTrials(const AdapterBatch* adapters, size_t rows) {
  if (adapters == nullptr || !adapters->row_trial.defined()) return std::vector<int64_t>(rows, 0);
  const at::Tensor t = adapters->row_trial.to(at::kCPU, at::kLong).contiguous();
  return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
}

// The start of a prefill of `rows` (indices into frozen->source) whose trials are `trials`: the
// lowest first adapted layer among them, capped at what is stored; nothing when that is layer 0.
std::optional<ForwardStart> FrozenStart(const FrozenRows* frozen, size_t skip,
                                        const AdapterBatch* adapters,
                                        const std::vector<int64_t>& rows,
                                        const std::vector<int64_t>& trials, int num_layers) {
  if (frozen == nullptr || frozen->states == nullptr || frozen->states->depth() == 0)
    return std::nullopt;
  TORCH_CHECK(frozen->states->skip() == skip, "frozen prompt states were stored after ",
              frozen->states->skip(), " prefix tokens, not ", skip);
  int first = num_layers;
  if (adapters != nullptr) {
    if (adapters->first_layer.empty()) return std::nullopt;  // not known: run every layer
    for (int64_t t : trials) first = std::min(first, adapters->first_layer.at(t));
  }
  first = std::min(first, frozen->states->depth());
  if (first == 0) return std::nullopt;
  std::vector<int64_t> sources;
  for (int64_t r : rows) sources.push_back(frozen->source.at(r));
  return frozen->states->Start(sources, first);
}

}  // namespace

PaddedBatch LeftPad(const std::vector<const TokenIds*>& prompts, int32_t pad_id, size_t skip) {
  size_t longest = 0;
  for (const TokenIds* p : prompts) longest = std::max(longest, p->size() - skip);
  const int64_t B = static_cast<int64_t>(prompts.size()), T = static_cast<int64_t>(longest);
  PaddedBatch batch{at::full({B, T}, pad_id, at::kLong), at::zeros({B, T}, at::kLong)};
  auto ids = batch.input_ids.accessor<int64_t, 2>();
  auto mask = batch.attention_mask.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b) {
    const TokenIds& p = *prompts[b];
    const int64_t offset = T - static_cast<int64_t>(p.size() - skip);
    for (size_t t = skip; t < p.size(); ++t) {
      ids[b][offset + t - skip] = p[t];
      mask[b][offset + t - skip] = 1;
    }
  }
  return batch;
}

PaddedBatch LeftPad(const std::vector<TokenIds>& prompts, int32_t pad_id) {
  std::vector<const TokenIds*> ptrs;
  for (const TokenIds& p : prompts) ptrs.push_back(&p);
  return LeftPad(ptrs, pad_id, 0);
}

size_t CommonPrefixLength(const std::vector<TokenIds>& prompts) {
  if (prompts.empty()) return 0;
  size_t shortest = prompts[0].size();
  for (const TokenIds& p : prompts) shortest = std::min(shortest, p.size());
  if (shortest == 0) return 0;
  size_t n = 0;
  while (n + 1 < shortest) {
    bool same = true;
    for (const TokenIds& p : prompts) same &= p[n] == prompts[0][n];
    if (!same) break;
    ++n;
  }
  return n;
}

SharedPrefix PrefillSharedPrefix(const Transformer& model, const TokenIds& prompt, size_t length,
                                 int64_t trials, const AdapterBatch* adapters) {
  SharedPrefix prefix;
  if (length == 0) return prefix;
  const int64_t k = adapters != nullptr ? trials : 1;
  prefix.length = length;
  prefix.cache = model.NewCache(k, static_cast<int64_t>(length));
  const TokenIds head(prompt.begin(), prompt.begin() + static_cast<int64_t>(length));
  const PaddedBatch batch = LeftPad(std::vector<TokenIds>(k, head), 0);
  std::optional<AdapterBatch> local;
  if (adapters != nullptr) {
    local = *adapters;
    local->row_trial = at::arange(k, at::kLong);
  }
  ForwardOptions options;
  options.adapters = local ? &*local : nullptr;
  model.Forward(batch.input_ids, batch.attention_mask, &prefix.cache, Iota(k), options);
  return prefix;
}

ForwardOutput PromptForward(const Transformer& model, const std::vector<TokenIds>& prompts,
                            int32_t pad_id, bool capture_hidden_states,
                            const AdapterBatch* adapters, const SharedPrefix* prefix,
                            const FrozenRows* frozen) {
  const size_t skip = prefix != nullptr ? prefix->length : 0;
  size_t longest = 0;
  std::vector<const TokenIds*> ptrs;
  for (const TokenIds& p : prompts) {
    longest = std::max(longest, p.size());
    ptrs.push_back(&p);
  }
  const int64_t B = static_cast<int64_t>(prompts.size());
  KvCache cache = model.NewCache(B, static_cast<int64_t>(longest));
  const std::vector<int64_t> trial = RowTrials(adapters, prompts.size());
  if (skip > 0) {
    for (int64_t b = 0; b < B; ++b) cache.CopySlotFrom(prefix->cache, trial[b], b);
  }
  const PaddedBatch batch = LeftPad(ptrs, pad_id, skip);
  ForwardOptions options;
  options.capture_hidden_states = capture_hidden_states;
  options.adapters = adapters;
  const std::optional<ForwardStart> start =
      capture_hidden_states
          ? std::nullopt
          : FrozenStart(frozen, skip, adapters, Iota(B), trial, model.config().num_layers);
  if (start) options.start = &*start;
  return model.Forward(batch.input_ids, batch.attention_mask, &cache, Iota(B), options);
}

std::vector<TokenIds> GreedyGenerate(const Transformer& model, const std::vector<TokenIds>& prompts,
                                     const GreedyOptions& options) {
  const size_t n = prompts.size();
  std::vector<TokenIds> generated(n);
  if (n == 0 || options.max_new_tokens <= 0) return generated;
  const int64_t slots = options.batch_size > 0 ? std::min<int64_t>(options.batch_size, n) : n;
  const size_t skip = options.prefix != nullptr ? options.prefix->length : 0;
  size_t longest = 0;
  for (const TokenIds& p : prompts) longest = std::max(longest, p.size());
  KvCache cache = model.NewCache(slots, static_cast<int64_t>(longest) + options.max_new_tokens);

  std::optional<AdapterBatch> adapters;
  if (options.adapters != nullptr) adapters = *options.adapters;
  auto trial_of = [&](int64_t prompt) {
    return options.prompt_trial.empty() ? 0 : options.prompt_trial[prompt];
  };
  std::vector<int64_t> slot_prompt(slots, -1);  // the prompt a slot decodes; -1 = free
  std::vector<int64_t> next_token(slots, 0);
  // Continuous batching admits the longest prompts first: rows prefilled together then need
  // little left padding (a third of the prefill's tokens were padding in the quick study's
  // refusal pass, admitted in prompt order), and the short ones fill the slots freed later.
  std::vector<int64_t> order = Iota(static_cast<int64_t>(n));
  if (options.continuous) {
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return prompts[a].size() > prompts[b].size(); });
  }
  size_t pending = 0;  // prompts[order[pending..]] have not started

  // `start` (a prefill above frozen layers) or the embeddings of `ids`.
  auto forward = [&](const at::Tensor& ids, const at::Tensor& mask,
                     const std::vector<int64_t>& rows, const ForwardStart* start) {
    ForwardOptions forward_options;
    if (adapters) {
      std::vector<int64_t> trials;
      for (int64_t s : rows) trials.push_back(trial_of(slot_prompt[s]));
      adapters->row_trial = at::tensor(trials, at::kLong);
      forward_options.adapters = &*adapters;
    }
    forward_options.start = start;
    forward_options.greedy_tokens_only = true;
    return model.Forward(ids, mask, &cache, rows, forward_options).next_tokens;
  };
  // Greedy choice for each row; a row that emits a stop token, trips the early stop or reaches
  // the length limit frees its slot.
  auto pick = [&](const at::Tensor& next_tokens, const std::vector<int64_t>& rows) {
    const at::Tensor next = next_tokens.contiguous();
    const int64_t* tokens = next.data_ptr<int64_t>();
    for (size_t i = 0; i < rows.size(); ++i) {
      const int64_t s = rows[i], p = slot_prompt[s];
      const int32_t token = static_cast<int32_t>(tokens[i]);
      bool done = std::find(options.stop_ids.begin(), options.stop_ids.end(), token) !=
                  options.stop_ids.end();
      if (!done) {
        generated[p].push_back(token);
        done = (options.stop_early && options.stop_early(p, generated[p])) ||
               static_cast<int>(generated[p].size()) >= options.max_new_tokens;
      }
      if (done) {
        slot_prompt[s] = -1;
        cache.Reset(s);
      } else {
        next_token[s] = token;
      }
    }
  };
  // Prefills pending prompts into free slots: any free slot when continuous, else only a fully
  // drained batch. A prompt whose first token ends it frees its slot again at once.
  auto admit = [&] {
    while (pending < n) {
      std::vector<int64_t> free;
      for (int64_t s = 0; s < slots; ++s) {
        if (slot_prompt[s] < 0) free.push_back(s);
      }
      if (free.empty() || (!options.continuous && static_cast<int64_t>(free.size()) != slots))
        return;
      free.resize(std::min(free.size(), n - pending));
      std::vector<const TokenIds*> rows;
      std::vector<int64_t> indices, trials;
      for (int64_t s : free) {
        const int64_t p = order[pending];
        slot_prompt[s] = p;
        rows.push_back(&prompts[p]);
        indices.push_back(p);
        trials.push_back(trial_of(p));
        if (skip > 0) cache.CopySlotFrom(options.prefix->cache, trials.back(), s);
        ++pending;
      }
      const PaddedBatch batch = LeftPad(rows, options.pad_id, skip);
      const std::optional<ForwardStart> start = FrozenStart(
          &options.frozen, skip, options.adapters, indices, trials, model.config().num_layers);
      pick(forward(batch.input_ids, batch.attention_mask, free, start ? &*start : nullptr), free);
    }
  };

  while (true) {
    admit();
    // Live rows move to the front slots, so the decode step reads the cache as a view.
    int64_t live = 0;
    for (int64_t s = 0; s < slots; ++s) live += slot_prompt[s] >= 0;
    if (live == 0) break;
    for (int64_t hole = 0, from = slots - 1; hole < live; ++hole) {
      if (slot_prompt[hole] >= 0) continue;
      while (slot_prompt[from] < 0) --from;
      cache.CopySlot(from, hole);
      slot_prompt[hole] = slot_prompt[from];
      next_token[hole] = next_token[from];
      slot_prompt[from] = -1;
      cache.Reset(from);
    }
    const std::vector<int64_t> rows = Iota(live);
    const at::Tensor ids =
        at::tensor(std::vector<int64_t>(next_token.begin(), next_token.begin() + live), at::kLong)
            .view({live, 1});
    pick(forward(ids, at::ones({live, 1}, at::kLong), rows, nullptr), rows);
  }
  return generated;
}

}  // namespace schism::model
