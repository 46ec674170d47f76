#include "common/trial_parameters.h"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace schism::common {

absl::StatusOr<TrialParameters> TrialParametersFromJson(const std::string& json_text) {
  auto j = nlohmann::json::parse(json_text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("trial parameters: not a JSON object");
  }
  // Accept {"params": {...}} as written by `schism trials --json` too.
  if (j.contains("params") && j["params"].is_object()) j = j["params"];
  TrialParameters p;
  auto number = [&](const std::string& key) -> absl::StatusOr<double> {
    if (!j.contains(key)) return absl::InvalidArgumentError(absl::StrCat("trial parameters: missing \"", key, "\""));
    if (!j[key].is_number() || !std::isfinite(j[key].get<double>())) {
      return absl::InvalidArgumentError(absl::StrCat("trial parameters: \"", key, "\" must be a finite number"));
    }
    return j[key].get<double>();
  };
  if (!j.contains("direction_scope") || !j["direction_scope"].is_string()) {
    return absl::InvalidArgumentError("trial parameters: \"direction_scope\" must be \"global\" or \"per layer\"");
  }
  const std::string scope = j["direction_scope"].get<std::string>();
  if (scope != "global" && scope != "per layer") {
    return absl::InvalidArgumentError(
        absl::StrCat("trial parameters: direction_scope \"", scope, "\" is not \"global\" or \"per layer\""));
  }
  p.global_direction = scope == "global";
  auto index = number("direction_index");
  if (!index.ok()) return index.status();
  p.direction_index = *index;
  for (const char* component : {kAttentionComponent, kMlpComponent}) {
    ComponentParameters c;
    const std::string prefix = std::string(component) + ".";
    for (auto [key, field] : {std::pair{"max_weight", &c.max_weight},
                              {"max_weight_position", &c.max_weight_position},
                              {"min_weight", &c.min_weight},
                              {"min_weight_distance", &c.min_weight_distance}}) {
      auto v = number(prefix + key);
      if (!v.ok()) return v.status();
      *field = *v;
    }
    if (std::string(component) == kMlpComponent) c.max_weight = std::max(0.0, c.max_weight);
    if (c.min_weight_distance <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("trial parameters: \"", prefix, "min_weight_distance\" must be > 0"));
    }
    p.components[component] = c;
  }
  return p;
}

std::vector<double> LayerWeights(const ComponentParameters& p, int num_layers) {
  std::vector<double> weights(num_layers, 0.0);
  const double min_w = p.min_weight * p.max_weight;
  for (int layer = 0; layer < num_layers; ++layer) {
    const double distance = std::fabs(layer - p.max_weight_position);
    if (distance > p.min_weight_distance) continue;
    weights[layer] = p.max_weight + distance / p.min_weight_distance * (min_w - p.max_weight);
  }
  return weights;
}

}  // namespace schism::common
