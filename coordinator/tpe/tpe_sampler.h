// A C++ port of Optuna 4.8's TPESampler as Heretic configures it (multivariate, multi-objective,
// optional constant liar), bit-compatible with Optuna for the same seed (docs/algorithm.md#tpe).
//
// The sampler is stateless apart from its two random streams: every call sees the study's
// trials as they are now, exactly like Optuna's sampler reading its storage.
#ifndef SCHISM_COORDINATOR_TPE_TPE_SAMPLER_H_
#define SCHISM_COORDINATOR_TPE_TPE_SAMPLER_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/random_state.h"
#include "coordinator/tpe/distributions.h"
#include "coordinator/tpe/parzen_estimator.h"

namespace schism::tpe {

enum class TrialState { kRunning, kComplete, kPruned, kFail, kWaiting };

// What the sampler needs to know about one trial of the study.
struct TrialRecord {
  int64_t number = 0;
  TrialState state = TrialState::kRunning;
  std::map<std::string, double> params;  // internal representation
  std::map<std::string, Distribution> distributions;
  std::vector<double> values;  // objective values; set for COMPLETE trials
};

enum class Direction { kMinimize, kMaximize };

struct TpeOptions {
  int n_startup_trials = 10;
  int n_ei_candidates = 24;
  uint32_t seed = 0;
  bool constant_liar = false;
  double prior_weight = 1.0;
  std::vector<Direction> directions = {Direction::kMinimize};
};

class TpeSampler {
 public:
  explicit TpeSampler(TpeOptions options);

  // Chooses every parameter of trial `number` in `suggest_order` (the order the objective calls
  // suggest_*), given all trials of the study (any states; the trial being sampled may be
  // among them and is ignored). Returns internal values by name. While fewer than
  // n_startup_trials() trials are finished (COMPLETE or PRUNED) every parameter is drawn at
  // random and nothing else of `trials` is read, so a caller that knows it is in that phase may
  // pass no trials at all: the draws are the same.
  std::map<std::string, double> SampleTrial(const std::vector<TrialRecord>& trials, int64_t number,
                                            const SearchSpace& suggest_order);

  int n_startup_trials() const { return options_.n_startup_trials; }

  // Below-set size: min(ceil(0.1 n), 25).
  static int Gamma(int n);
  // Optuna's default_weights: ones, except the oldest of more than 25 ramp up linearly.
  static std::vector<double> DefaultWeights(int n);

 private:
  std::map<std::string, double> SampleRelative(const std::vector<TrialRecord>& trials,
                                               int64_t number, const SearchSpace& space);
  double SampleRandom(const Distribution& d);

  TpeOptions options_;
  coordinator::RandomState rng_tpe_;
  coordinator::RandomState rng_random_;
};

}  // namespace schism::tpe

#endif  // SCHISM_COORDINATOR_TPE_TPE_SAMPLER_H_
