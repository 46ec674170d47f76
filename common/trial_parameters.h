// The parameters of one abliteration trial (DESIGN.md §2), as the optimizer samples them, and
// their translation to per-layer ablation weights. Torch-free: the coordinator builds these
// from TPE samples, the worker turns them into adapters.
#ifndef SCHISM_COMMON_TRIAL_PARAMETERS_H_
#define SCHISM_COMMON_TRIAL_PARAMETERS_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace schism::common {

// The components MPOA modifies; MoE experts' down projections count as mlp.down_proj.
inline constexpr const char* kAttentionComponent = "attn.o_proj";
inline constexpr const char* kMlpComponent = "mlp.down_proj";

struct ComponentParameters {
  double max_weight = 0;           // clamped at 0 for the MLP (Heretic's sampling trick)
  double max_weight_position = 0;  // layer index where the weight peaks
  double min_weight = 0;           // fraction of max_weight reached at min_weight_distance
  double min_weight_distance = 1;  // layers from the peak where the weight reaches min
};

struct TrialParameters {
  bool global_direction = true;  // direction_scope == "global"
  double direction_index = 0;    // interpolated layer index of the global direction
  std::map<std::string, ComponentParameters> components;  // by component name
};

// From the flat name -> value map the optimizer uses ("direction_scope", "attn.o_proj.max_weight",
// ...). Missing or ill-typed keys are errors naming the key. Values are external: strings for
// direction_scope, numbers otherwise.
absl::StatusOr<TrialParameters> TrialParametersFromJson(const std::string& json_text);

// The ablation weight λ of each of `num_layers` layers for one component (0 = untouched):
// λ = max_w + dist/min_weight_distance · (min_w − max_w) within min_weight_distance of the
// peak, with min_w = min_weight · max_w (DESIGN.md §2).
std::vector<double> LayerWeights(const ComponentParameters& p, int num_layers);

}  // namespace schism::common

#endif  // SCHISM_COMMON_TRIAL_PARAMETERS_H_
