// Heretic's search space and the parameters of one abliteration trial (docs/algorithm.md), in the
// one torch-free place both sides read: the coordinator's sampler takes the parameter names and
// ranges from HereticSearchSpace, the worker turns the sampled values into TrialParameters
// (TrialParametersFromValues: names, the MLP clamp) and those into per-layer weights
// (LayerWeights, Heretic's weight kernel).
#ifndef SCHISM_COMMON_TRIAL_PARAMETERS_H_
#define SCHISM_COMMON_TRIAL_PARAMETERS_H_

#include <map>
#include <optional>
#include <string>
#include <variant>
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

// One sampled parameter as the optimizer reports it: a number, or a categorical's choice.
using ParameterValue = std::variant<double, std::string>;
// The flat name -> value map of one trial ("direction_scope", "attn.o_proj.max_weight", ...).
using ParameterValues = std::map<std::string, ParameterValue>;

// One dimension of the search space: categorical when `choices` is set, else a float in
// [low, high].
struct ParameterRange {
  std::string name;
  std::vector<std::string> choices;
  double low = 0, high = 0;
};

// Heretic's search space for a model with `num_layers` decoder layers (docs/algorithm.md): the
// direction (scope, interpolated index in [0.4, 0.9] x (L - 1)) and, per component, the peak
// weight (MLP from -0.25: a negative sample clamps to 0, so a share of trials leave the MLP
// alone), its position, the minimum weight and its distance.
std::vector<ParameterRange> HereticSearchSpace(int num_layers);

// From the sampled values. Missing or ill-typed keys are errors naming the key; the MLP's
// max_weight is clamped at 0.
absl::StatusOr<TrialParameters> TrialParametersFromValues(const ParameterValues& values);

// The values' one JSON form, an object by name (what `schism trials --json` prints, `--params
// FILE` reads and an export's model card records); {"params": {...}} is read too.
absl::StatusOr<ParameterValues> ParameterValuesFromJson(const std::string& json_text);
std::string ParameterValuesToJson(const ParameterValues& values);

// ParameterValuesFromJson, then TrialParametersFromValues.
absl::StatusOr<TrialParameters> TrialParametersFromJson(const std::string& json_text);

// The ablation weight λ of each of `num_layers` layers for one component (0 = untouched):
// λ = max_w + dist/min_weight_distance · (min_w − max_w) within min_weight_distance of the
// peak, with min_w = min_weight · max_w (docs/algorithm.md#weight-kernel).
std::vector<double> LayerWeights(const ComponentParameters& p, int num_layers);

}  // namespace schism::common

#endif  // SCHISM_COMMON_TRIAL_PARAMETERS_H_
