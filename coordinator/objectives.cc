#include "coordinator/objectives.h"

namespace schism::coordinator {

std::vector<double> TrialObjectives(const v1::StudySpec& spec, int baseline_refusals,
                                    const v1::TrialScores& scores) {
  const double refusals = scores.refusals(), kl = scores.kl_divergence();
  if (spec.objective() != "heretic-1.4") return {refusals, kl};
  const double refusal_score = baseline_refusals > 0 ? refusals / baseline_refusals : refusals;
  const double scale = spec.kl_divergence_scale(), target = spec.kl_divergence_target();
  const double kl_score = kl >= target ? kl / scale : refusal_score * target / scale;
  return {kl_score, refusal_score};
}

}  // namespace schism::coordinator
