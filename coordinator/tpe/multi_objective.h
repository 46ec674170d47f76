// Multi-objective pieces of Optuna's MOTPE (docs/algorithm.md#split, #weights): non-domination
// ranks, the reference point, hypervolume, greedy hypervolume subset selection (HSSP), the split of
// complete trials into below/above, and the hypervolume-contribution weights of the below set.
// Every loss vector is to be minimized.
#ifndef SCHISM_COORDINATOR_TPE_MULTI_OBJECTIVE_H_
#define SCHISM_COORDINATOR_TPE_MULTI_OBJECTIVE_H_

#include <cstddef>
#include <vector>

namespace schism::tpe {

using LossVector = std::vector<double>;

// Pareto ranks (0 = non-dominated). Equal vectors share a rank. Peeling stops once at least
// `min_ranked` distinct vectors have a rank; the rest share the next rank (as Optuna does).
std::vector<int> NonDominationRanks(const std::vector<LossVector>& losses, size_t min_ranked);

// max(1.1·w, 0.9·w) of the columnwise worst w, zeros replaced by 1e-12.
LossVector ReferencePoint(const std::vector<LossVector>& losses);

// Hypervolume dominated by `points` and bounded by `ref` (points need not be a front).
double Hypervolume(std::vector<LossVector> points, const LossVector& ref);

// Picks `m` of `losses` greedily by hypervolume contribution; returns entries of `ids`.
std::vector<size_t> SolveHssp(const std::vector<LossVector>& losses, const std::vector<size_t>& ids,
                              size_t m, const LossVector& ref);

// Splits `losses` (complete trials in trial order) so that `n_below` go below; returns the
// positions (into `losses`) of the below set, ascending.
std::vector<size_t> SplitBelowMultiObjective(const std::vector<LossVector>& losses, size_t n_below);

// MOTPE weights of the below observations: normalized leave-one-out hypervolume contributions,
// floored at 1e-12 (all 1 when there is at most one).
std::vector<double> MotpeWeights(const std::vector<LossVector>& losses);

}  // namespace schism::tpe

#endif  // SCHISM_COORDINATOR_TPE_MULTI_OBJECTIVE_H_
