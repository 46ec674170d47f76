// What the optimizer minimizes for a trial (StudySpec.objective): Heretic master's raw
// (refusals, KL), or Heretic 1.4's score, which divides refusals by the baseline's and KL by
// kl_divergence_scale, and below kl_divergence_target replaces the KL term with the scaled
// refusal ratio so the sampler does not dwell on trials that change nothing.
#ifndef SCHISM_COORDINATOR_OBJECTIVES_H_
#define SCHISM_COORDINATOR_OBJECTIVES_H_

#include <vector>

#include "schism/v1/study.pb.h"
#include "schism/v1/trial.pb.h"

namespace schism::coordinator {

// The objective values, both minimized, in the order the optimizer is told them: raw is
// (refusals, KL); heretic-1.4 is (KL score, refusal score) as Heretic 1.4 hands them to Optuna.
// `spec` must be normalized (NormalizeStudySpec).
std::vector<double> TrialObjectives(const v1::StudySpec& spec, int baseline_refusals,
                                    const v1::TrialScores& scores);

}  // namespace schism::coordinator

#endif  // SCHISM_COORDINATOR_OBJECTIVES_H_
