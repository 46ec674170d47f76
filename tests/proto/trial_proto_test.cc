#include <gtest/gtest.h>

#include "schism/v1/trial.pb.h"

namespace {

TEST(TrialProto, RoundTripsParamsAndScoresThroughWireFormat) {
  schism::v1::Trial trial;
  trial.set_number(17);
  trial.set_state(schism::v1::TRIAL_STATE_COMPLETE);
  (*trial.mutable_params()->mutable_values())["direction_scope"].set_categorical_value("global");
  (*trial.mutable_params()->mutable_values())["attn.o_proj.max_weight"].set_float_value(1.25);
  trial.mutable_scores()->set_refusals(12);
  trial.mutable_scores()->set_kl_divergence(0.0625);

  std::string wire;
  ASSERT_TRUE(trial.SerializeToString(&wire));
  schism::v1::Trial parsed;
  ASSERT_TRUE(parsed.ParseFromString(wire));
  EXPECT_EQ(parsed.number(), 17);
  EXPECT_EQ(parsed.params().values().at("direction_scope").categorical_value(), "global");
  EXPECT_DOUBLE_EQ(parsed.params().values().at("attn.o_proj.max_weight").float_value(), 1.25);
  EXPECT_EQ(parsed.scores().refusals(), 12);
}

TEST(TrialProto, RejectsGarbageBytes) {
  schism::v1::Trial parsed;
  EXPECT_FALSE(parsed.ParseFromString(std::string("\xff\xff\xff\xff\x0f garbage", 14)));
}

}  // namespace
