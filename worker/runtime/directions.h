// Refusal directions (docs/algorithm.md#directions): mean residuals of harmful and harmless prompts
// at the last prompt token, per layer, and the normalized difference; saved as a small checksummed
// artifact that the coordinator serves to every worker of a study.
#ifndef SCHISM_WORKER_RUNTIME_DIRECTIONS_H_
#define SCHISM_WORKER_RUNTIME_DIRECTIONS_H_

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/trial_parameters.h"
#include "worker/runtime/generator.h"

namespace schism::model {

// Mean hidden states (N+1, H) in float64 over `prompts`, processed `batch_size` at a time. With
// winsorization_quantile < 1, each prompt's vector per layer is first clamped symmetrically to
// the quantile of its absolute components.
at::Tensor ResidualMeans(const Transformer& model, const std::vector<TokenIds>& prompts,
                         int32_t pad_id, int batch_size, double winsorization_quantile = 1.0);

// R = normalize(bad − good) per layer; with orthogonalize, R loses its component along
// normalize(good) and is normalized again. Float32 (N+1, H).
at::Tensor RefusalDirections(const at::Tensor& good_means, const at::Tensor& bad_means,
                             bool orthogonalize);

// The direction trial parameters use for `layer` (0-based decoder layer): R[layer+1] per layer,
// or the interpolation at direction_index for a global direction.
at::Tensor DirectionForLayer(const at::Tensor& directions, const common::TrialParameters& params,
                             int layer);

// Artifact format: "SCHDIR1\n", u64 rows, u64 cols, float32 data, u64 FNV-1a of the data.
absl::Status SaveDirections(const std::string& path, const at::Tensor& directions);
absl::StatusOr<at::Tensor> LoadDirections(const std::string& path);
// The same bytes in memory (what the coordinator stores and serves).
std::string SerializeDirections(const at::Tensor& directions);
absl::StatusOr<at::Tensor> ParseDirections(const std::string& bytes, const std::string& where);

}  // namespace schism::model

#endif  // SCHISM_WORKER_RUNTIME_DIRECTIONS_H_
