// Perplexity of held-out text under k trials' adapters: the damage measure beside first-token KL
// divergence (StudySpec.perplexity). Each text's tokens after the first are predicted from those
// before it; a trial's perplexity is exp(total negative log-likelihood / predicted tokens) over all
// its texts, as `transformers` computes it for one sequence with labels = input_ids.
#ifndef SCHISM_WORKER_RUNTIME_PERPLEXITY_H_
#define SCHISM_WORKER_RUNTIME_PERPLEXITY_H_

#include <vector>

#include "worker/runtime/generator.h"
#include "worker/runtime/transformer.h"

namespace schism::model {

// One perplexity per trial (adapters null: the unmodified model, one value). Texts of fewer than
// two tokens predict nothing and are skipped; `batch_size` rows (trial × text) per forward pass.
std::vector<double> Perplexities(const Transformer& model, const std::vector<TokenIds>& texts,
                                 int32_t pad_id, const AdapterBatch* adapters, size_t trials,
                                 int batch_size);

}  // namespace schism::model

#endif  // SCHISM_WORKER_RUNTIME_PERPLEXITY_H_
