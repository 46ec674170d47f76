#include "coordinator/pareto_front.h"

#include <algorithm>
#include <limits>

namespace schism::coordinator {

std::vector<TrialScore> ParetoFront(std::vector<TrialScore> complete) {
  std::stable_sort(complete.begin(), complete.end(), [](const TrialScore& a, const TrialScore& b) {
    if (a.refusals != b.refusals) return a.refusals < b.refusals;
    if (a.kl_divergence != b.kl_divergence) return a.kl_divergence < b.kl_divergence;
    return a.number < b.number;
  });
  std::vector<TrialScore> front;
  double min_kl = std::numeric_limits<double>::infinity();
  for (const TrialScore& t : complete) {
    if (t.kl_divergence < min_kl) {
      min_kl = t.kl_divergence;
      front.push_back(t);
    }
  }
  return front;
}

}  // namespace schism::coordinator
