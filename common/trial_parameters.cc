#include "common/trial_parameters.h"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace schism::common {
namespace {

constexpr const char* kScopeGlobal = "global";
constexpr const char* kScopePerLayer = "per layer";

}  // namespace

std::vector<ParameterRange> HereticSearchSpace(int num_layers) {
  const double last = num_layers - 1;
  std::vector<ParameterRange> space;
  space.push_back({"direction_scope", {kScopeGlobal, kScopePerLayer}});
  space.push_back({"direction_index", {}, 0.4 * last, 0.9 * last});
  for (const std::string component : {kAttentionComponent, kMlpComponent}) {
    space.push_back({component + ".max_weight", {}, component == kMlpComponent ? -0.25 : 0.8, 1.5});
    space.push_back({component + ".max_weight_position", {}, 0.6 * last, last});
    space.push_back({component + ".min_weight", {}, 0.0, 1.0});
    space.push_back({component + ".min_weight_distance", {}, 1.0, std::max(0.6 * last, 1.0)});
  }
  return space;
}

absl::StatusOr<TrialParameters> TrialParametersFromValues(const ParameterValues& values) {
  auto number = [&](const std::string& key) -> absl::StatusOr<double> {
    auto it = values.find(key);
    if (it == values.end())
      return absl::InvalidArgumentError(absl::StrCat("trial parameters: missing \"", key, "\""));
    const double* v = std::get_if<double>(&it->second);
    if (v == nullptr || !std::isfinite(*v)) {
      return absl::InvalidArgumentError(
          absl::StrCat("trial parameters: \"", key, "\" must be a finite number"));
    }
    return *v;
  };
  auto scope = values.find("direction_scope");
  const std::string* scope_name =
      scope == values.end() ? nullptr : std::get_if<std::string>(&scope->second);
  if (scope_name == nullptr) {
    return absl::InvalidArgumentError(
        "trial parameters: \"direction_scope\" must be \"global\" or \"per layer\"");
  }
  if (*scope_name != kScopeGlobal && *scope_name != kScopePerLayer) {
    return absl::InvalidArgumentError(absl::StrCat("trial parameters: direction_scope \"",
                                                   *scope_name,
                                                   "\" is not \"global\" or \"per layer\""));
  }
  TrialParameters p;
  p.global_direction = *scope_name == kScopeGlobal;
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
      return absl::InvalidArgumentError(
          absl::StrCat("trial parameters: \"", prefix, "min_weight_distance\" must be > 0"));
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

absl::StatusOr<ParameterValues> ParameterValuesFromJson(const std::string& json_text) {
  auto j = nlohmann::json::parse(json_text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("trial parameters: not a JSON object");
  }
  // Accept {"params": {...}} as written by `schism trials --json` too.
  if (j.contains("params") && j["params"].is_object()) j = j["params"];
  ParameterValues values;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it->is_string()) {
      values[it.key()] = it->get<std::string>();
    } else if (it->is_number()) {
      values[it.key()] = it->get<double>();
    } else {
      // A mistyped member reads as not-a-number, so TrialParametersFromValues names it when it
      // is a parameter (members that are not parameters are never read).
      values[it.key()] = std::nan("");
    }
  }
  return values;
}

std::string ParameterValuesToJson(const ParameterValues& values) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, value] : values) {
    std::visit([&, &key = name](const auto& v) { j[key] = v; }, value);
  }
  return j.dump();
}

absl::StatusOr<TrialParameters> TrialParametersFromJson(const std::string& json_text) {
  auto values = ParameterValuesFromJson(json_text);
  if (!values.ok()) return values.status();
  return TrialParametersFromValues(*values);
}

}  // namespace schism::common
