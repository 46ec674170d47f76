// End-to-end replays of real Optuna 4.8.0 runs (spec/tpe.md Appendix A,
// ../shared/spec/tpe_vectors): the C++ sampler must choose the same parameters for every trial.
#include "coordinator/tpe/tpe_sampler.h"

#include "tests/coordinator/tpe/optuna_runs.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

namespace schism::tpe {
namespace {

// Compares the sampled parameters with Optuna's; returns the largest float difference.
double ExpectSameParams(const SearchSpace& space, const std::map<std::string, double>& got,
                        const RecordedTrial& want) {
  double max_diff = 0;
  for (const auto& [name, d] : space) {
    const ExternalValue value = ToExternal(d, got.at(name));
    const auto& expected = want.params.at(name);
    if (const auto* s = std::get_if<std::string>(&value)) {
      EXPECT_EQ(*s, expected.get<std::string>()) << "trial " << want.number << " " << name;
    } else if (const auto* i = std::get_if<int64_t>(&value)) {
      EXPECT_EQ(*i, expected.get<int64_t>()) << "trial " << want.number << " " << name;
    } else {
      const double f = std::get<double>(value), e = expected.get<double>();
      EXPECT_NEAR(f, e, 1e-9 * std::max(1.0, std::fabs(e)))
          << "trial " << want.number << " " << name;
      max_diff = std::max(max_diff, std::fabs(f - e));
    }
  }
  return max_diff;
}

TrialRecord Asked(int64_t number, const SearchSpace& space,
                  const std::map<std::string, double>& params) {
  TrialRecord t;
  t.number = number;
  t.state = TrialState::kRunning;
  t.params = params;
  for (const auto& [name, d] : space) t.distributions.emplace(name, d);
  return t;
}

void Tell(TrialRecord* t, const RecordedTrial& recorded) {
  t->state = recorded.state;
  t->values = recorded.values;
}

// Asks and tells one trial at a time, as study.optimize does; returns the largest float gap.
// `no_history_in_startup`: hand the sampler no trials while fewer than n_startup are finished,
// as the coordinator does (StudyManager::AskTrial).
double ReplaySequential(const std::vector<RecordedTrial>& recorded, uint32_t seed, int n_startup,
                        const SearchSpace& space, bool no_history_in_startup = false) {
  TpeOptions options;
  options.seed = seed;
  options.n_startup_trials = n_startup;
  options.n_ei_candidates = 128;
  options.directions = {Direction::kMinimize, Direction::kMinimize};
  TpeSampler sampler(options);
  std::vector<TrialRecord> trials;
  double max_diff = 0;
  int finished = 0;
  for (const RecordedTrial& r : recorded) {
    const bool startup = finished < n_startup;
    auto params = sampler.SampleTrial(
        no_history_in_startup && startup ? std::vector<TrialRecord>() : trials, r.number, space);
    max_diff = std::max(max_diff, ExpectSameParams(space, params, r));
    trials.push_back(Asked(r.number, space, params));
    Tell(&trials.back(), r);
    finished += r.state == TrialState::kComplete || r.state == TrialState::kPruned;
  }
  return max_diff;
}

// The coordinator builds no history for asks in the random startup phase (a 10,000-trial study's
// asks were O(trials) under its lock): the draws, and everything after, must stay Optuna's.
TEST(TpeSamplerReplay, RunA_WithoutHistoryDuringStartupStillMatchesOptuna) {
  const auto recorded = ReadRun("A");
  ASSERT_EQ(recorded.size(), 40u);
  EXPECT_LT(ReplaySequential(recorded, 42, 10, HereticSpace(), /*no_history_in_startup=*/true),
            1e-9);
}

TEST(TpeSamplerReplay, RunA_Seed42Sequential40Trials) {
  const auto recorded = ReadRun("A");
  ASSERT_EQ(recorded.size(), 40u);
  std::cout << "run A max |param - optuna| = " << ReplaySequential(recorded, 42, 10, HereticSpace())
            << "\n";
}

TEST(TpeSamplerReplay, RunB_ConstantLiarFourWorkers) {
  const auto recorded = ReadRun("B");
  ASSERT_EQ(recorded.size(), 32u);
  TpeOptions options;
  options.seed = 7;
  options.n_startup_trials = 8;
  options.n_ei_candidates = 128;
  options.constant_liar = true;
  options.directions = {Direction::kMinimize, Direction::kMinimize};
  TpeSampler sampler(options);
  const SearchSpace space = HereticSpace();
  std::vector<TrialRecord> trials;
  double max_diff = 0;
  for (size_t round = 0; round < 8; ++round) {
    for (size_t w = 0; w < 4; ++w) {
      const RecordedTrial& r = recorded[round * 4 + w];
      auto params = sampler.SampleTrial(trials, r.number, space);
      max_diff = std::max(max_diff, ExpectSameParams(space, params, r));
      trials.push_back(Asked(r.number, space, params));
    }
    for (size_t w = 0; w < 4; ++w) Tell(&trials[round * 4 + w], recorded[round * 4 + w]);
  }
  std::cout << "run B max |param - optuna| = " << max_diff << "\n";
}

TEST(TpeSamplerReplay, RunC_MixedKindsWithPrunedAndFailedTrials) {
  const auto recorded = ReadRun("C");
  ASSERT_EQ(recorded.size(), 36u);
  std::cout << "run C max |param - optuna| = " << ReplaySequential(recorded, 3, 6, MixedSpace())
            << "\n";
}

TEST(TpeSampler, GammaAndDefaultWeightsMatchSpec) {
  const int ns[] = {0, 1, 5, 9, 10, 11, 60, 100, 249, 250, 251, 1000};
  const int expected[] = {0, 1, 1, 1, 1, 2, 6, 10, 25, 25, 25, 25};
  for (size_t i = 0; i < std::size(ns); ++i)
    EXPECT_EQ(TpeSampler::Gamma(ns[i]), expected[i]) << ns[i];
  auto w30 = TpeSampler::DefaultWeights(30);
  ASSERT_EQ(w30.size(), 30u);
  const double head[] = {0.03333333333333333, 0.275, 0.5166666666666667, 0.7583333333333333, 1.0};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(w30[i], head[i]);
  for (int i = 5; i < 30; ++i) EXPECT_EQ(w30[i], 1.0);
  auto w26 = TpeSampler::DefaultWeights(26);
  EXPECT_EQ(w26[0], 0.038461538461538464);
  EXPECT_EQ(TpeSampler::DefaultWeights(24), std::vector<double>(24, 1.0));
  EXPECT_TRUE(TpeSampler::DefaultWeights(0).empty());
}

}  // namespace
}  // namespace schism::tpe
