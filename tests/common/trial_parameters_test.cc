#include "common/trial_parameters.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"

namespace schism::common {
namespace {

ParameterValues Sample() {
  return {{"direction_scope", std::string("per layer")},
          {"direction_index", 12.5},
          {"attn.o_proj.max_weight", 1.2},
          {"attn.o_proj.max_weight_position", 20.0},
          {"attn.o_proj.min_weight", 0.5},
          {"attn.o_proj.min_weight_distance", 4.0},
          {"mlp.down_proj.max_weight", -0.1},
          {"mlp.down_proj.max_weight_position", 18.0},
          {"mlp.down_proj.min_weight", 0.25},
          {"mlp.down_proj.min_weight_distance", 2.0}};
}

TEST(TrialParameters, TheSearchSpaceNamesEveryParameterTheWorkerReads) {
  const std::vector<ParameterRange> space = HereticSearchSpace(30);
  ASSERT_EQ(space.size(), 10u);
  ParameterValues mid;
  for (const ParameterRange& p : space) {
    if (p.choices.empty()) {
      EXPECT_LT(p.low, p.high) << p.name;
      mid[p.name] = (p.low + p.high) / 2;
    } else {
      mid[p.name] = p.choices[0];
    }
  }
  auto params = TrialParametersFromValues(mid);
  ASSERT_TRUE(params.ok()) << params.status() << ": a sample of the space must be a valid trial";
  EXPECT_TRUE(params->global_direction);
  EXPECT_DOUBLE_EQ(params->direction_index, (0.4 * 29 + 0.9 * 29) / 2);
  // Heretic's ranges for 30 layers (L - 1 = 29), the MLP's peak from -0.25.
  EXPECT_EQ(space[3].name, "attn.o_proj.max_weight_position");
  EXPECT_DOUBLE_EQ(space[3].low, 0.6 * 29);
  EXPECT_EQ(space[6].name, "mlp.down_proj.max_weight");
  EXPECT_DOUBLE_EQ(space[6].low, -0.25);
  EXPECT_DOUBLE_EQ(space[2].low, 0.8);
  EXPECT_DOUBLE_EQ(HereticSearchSpace(2)[5].high, 1.0)
      << "min_weight_distance's range never collapses below 1";
}

TEST(TrialParameters, ValuesJsonRoundTripsAndTheMlpPeakClampsAtZero) {
  const std::string json = ParameterValuesToJson(Sample());
  auto values = ParameterValuesFromJson(json);
  ASSERT_TRUE(values.ok()) << values.status();
  EXPECT_EQ(*values, Sample());
  EXPECT_EQ(*ParameterValuesFromJson(R"({"number": 3, "params": )" + json + "}"), Sample())
      << "schism trials --json";
  auto params = TrialParametersFromJson(json);
  ASSERT_TRUE(params.ok()) << params.status();
  EXPECT_FALSE(params->global_direction);
  EXPECT_EQ(params->components.at(kMlpComponent).max_weight, 0.0);
  EXPECT_EQ(params->components.at(kAttentionComponent).max_weight, 1.2);
  // λ = max + d / distance * (min * max - max) within distance of the peak, 0 beyond it.
  const std::vector<double> w = LayerWeights(params->components.at(kAttentionComponent), 30);
  EXPECT_DOUBLE_EQ(w[20], 1.2);
  EXPECT_DOUBLE_EQ(w[22], 1.2 + 2.0 / 4.0 * (0.6 - 1.2));
  EXPECT_DOUBLE_EQ(w[24], 0.6);
  EXPECT_EQ(w[25], 0.0);
  EXPECT_EQ(w[15], 0.0);
}

TEST(TrialParameters, MissingOrMistypedParametersAreNamed) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"[1]", "not a JSON object"},
      {R"({"direction_scope": 1})", "\"direction_scope\" must be"},
      {R"({"direction_scope": "sideways"})", "\"sideways\" is not"},
      {R"({"direction_scope": "global"})", "missing \"direction_index\""},
      {R"({"direction_scope": "global", "direction_index": "x"})",
       "\"direction_index\" must be a finite number"},
      {R"({"direction_scope": "global", "direction_index": null})",
       "\"direction_index\" must be a finite number"},
  };
  for (const auto& [json, expected] : cases) {
    auto p = TrialParametersFromJson(json);
    ASSERT_FALSE(p.ok()) << json;
    EXPECT_TRUE(absl::StrContains(p.status().message(), expected)) << json << " -> " << p.status();
  }
  ParameterValues v = Sample();
  v["attn.o_proj.min_weight_distance"] = 0.0;
  EXPECT_TRUE(absl::StrContains(TrialParametersFromValues(v).status().message(),
                                "min_weight_distance\" must be > 0"));
}

}  // namespace
}  // namespace schism::common
