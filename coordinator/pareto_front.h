// The study's result as Heretic presents it: the Pareto-optimal trials over (refusals, KL
// divergence), both minimized.
#ifndef SCHISM_COORDINATOR_PARETO_FRONT_H_
#define SCHISM_COORDINATOR_PARETO_FRONT_H_

#include <cstdint>
#include <vector>

namespace schism::coordinator {

struct TrialScore {
  int64_t number = 0;
  int refusals = 0;
  double kl_divergence = 0;
};

// Heretic's ordering: completed trials sorted by (refusals, KL), keeping each trial whose KL is
// strictly below that of every trial before it. The result runs from fewest refusals (highest
// KL) to lowest KL (most refusals); ties keep the lower trial number.
std::vector<TrialScore> ParetoFront(std::vector<TrialScore> complete);

}  // namespace schism::coordinator

#endif  // SCHISM_COORDINATOR_PARETO_FRONT_H_
