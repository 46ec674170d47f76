// A study's scorers behind one interface (docs/architecture.md#scorers). KeywordRate and
// KLDivergence are the objectives TPE minimizes: they run on every trial, fused in one pass (one
// set of adapters, one generation loop with exact early stopping, one KL prefill), so they are one
// Scorer here. The others measure without being optimized, on the baseline and on each trial that
// no completed trial dominates when it is scored (a superset of the final Pareto front, and cheap):
//   Judge       the refusal prompts' full responses (no early stopping), judged by an
//               OpenAI-compatible endpoint; an unreachable or malformed endpoint is recorded on the
//               trial (judge_error) and the study goes on with its keyword counts
//   Perplexity  held-out text as plain text, exp(mean next-token NLL)
#ifndef SCHISM_WORKER_STUDY_SCORERS_H_
#define SCHISM_WORKER_STUDY_SCORERS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/trial_parameters.h"
#include "schism/v1/coordinator.pb.h"
#include "worker/runtime/trial_evaluator.h"

namespace schism::worker {

class Scorer {
 public:
  virtual ~Scorer() = default;
  virtual std::string name() const = 0;
  // Writes this scorer's fields of scores[i] for trials[i]; no trials means the unmodified model
  // (scores has one entry). An error fails the lease; a scorer that can degrade (the judge)
  // records what went wrong in the scores instead.
  virtual absl::Status Score(model::TrialEvaluator& evaluator,
                             const std::vector<common::TrialParameters>& trials,
                             std::vector<v1::TrialScores>& scores) = 0;
  // The part that needs no model but the outside world (the judge's requests), for the entries of
  // the last Score call, now in `scores` (scores[i] is what was entry i). Run after a
  // tensor-parallel step's ranks have met, so that a slow endpoint never holds a collective.
  virtual void Conclude(const std::vector<v1::TrialScores*>& scores) { (void)scores; }
};

// KeywordRate and KLDivergence, through TrialEvaluator::Evaluate (the baseline: its refusals).
std::unique_ptr<Scorer> MakeObjectiveScorer();

// The study's other scorers, in the order they run (Judge, then Perplexity); empty when it has
// none. `refusal_prompts` are the refusal prompts' texts as the model saw them (the judge's
// requests), `contacts_judge` false on tensor-parallel ranks other than 0 (they generate beside
// rank 0 but leave the endpoint to it). Errors: the perplexity texts cannot be read.
absl::StatusOr<std::vector<std::unique_ptr<Scorer>>> MakeOtherScorers(
    const model::LoadedModel& model, const v1::StudySpec& spec,
    std::vector<std::string> refusal_prompts, bool contacts_judge);

// Whether a trial with these scores would be on the Pareto front beside `front` (Heretic's front:
// (refusals, KL) ascending, strictly falling KL, ties to the lower number): no member has both
// scores at most the trial's and comes first in that order.
bool OnParetoFront(int64_t number, const v1::TrialScores& scores,
                   const google::protobuf::RepeatedPtrField<v1::Trial>& front);

}  // namespace schism::worker

#endif  // SCHISM_WORKER_STUDY_SCORERS_H_
