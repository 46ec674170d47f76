// Optuna's multivariate Parzen estimator (docs/algorithm.md#parzen-estimator): a mixture of one
// product kernel per observation plus a prior kernel, over a search space in sorted-name order.
#ifndef SCHISM_COORDINATOR_TPE_PARZEN_ESTIMATOR_H_
#define SCHISM_COORDINATOR_TPE_PARZEN_ESTIMATOR_H_

#include <string>
#include <utility>
#include <vector>

#include "coordinator/random_state.h"
#include "coordinator/tpe/distributions.h"

namespace schism::tpe {

// Parameters in the order TPE processes them (sorted by name).
using SearchSpace = std::vector<std::pair<std::string, Distribution>>;

class ParzenEstimator {
 public:
  // `observations[i][d]` is observation i's internal value of parameter d; `weights[i]` its
  // weight. Observation count may be zero (then only the prior kernel remains).
  ParzenEstimator(const SearchSpace& space, const std::vector<std::vector<double>>& observations,
                  const std::vector<double>& weights, double prior_weight = 1.0);

  // Draws `n` candidates (internal values, candidate-major), consuming `rng` exactly as
  // Optuna's _MixtureOfProductDistribution.sample does.
  std::vector<std::vector<double>> Sample(coordinator::RandomState& rng, int n) const;

  // Mixture log density of each candidate.
  std::vector<double> LogPdf(const std::vector<std::vector<double>>& candidates) const;

  // Exposed for tests: kernel weights (normalized), and per numerical parameter mus and sigmas.
  const std::vector<double>& kernel_weights() const { return weights_; }
  const std::vector<double>& mus(size_t param) const { return params_[param].mus; }
  const std::vector<double>& sigmas(size_t param) const { return params_[param].sigmas; }
  const std::vector<std::vector<double>>& categorical_rows(size_t param) const {
    return params_[param].rows;
  }

 private:
  struct Param {
    Distribution dist;
    double lo_t = 0, hi_t = 0;
    std::vector<double> mus, sigmas;        // numerical, one per kernel
    std::vector<std::vector<double>> rows;  // categorical: per kernel, probabilities per choice
  };
  double Transform(const Param& p, double x) const;

  std::vector<Param> params_;
  std::vector<double> weights_;
};

}  // namespace schism::tpe

#endif  // SCHISM_COORDINATOR_TPE_PARZEN_ESTIMATOR_H_
