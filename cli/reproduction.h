// `--reproduce FILE` of schism evaluate and schism export: a Heretic reproduce.json
// (common/heretic_reproduce.h) turned into the study spec it describes and the one trial it
// records, then prepared (directions, baseline) on this machine through the trial worker's own
// steps, so that the trial is scored, or exported, exactly as a study's trial would be.
#ifndef SCHISM_CLI_REPRODUCTION_H_
#define SCHISM_CLI_REPRODUCTION_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/heretic_reproduce.h"
#include "schism/v1/coordinator.pb.h"
#include "worker/trial_worker.h"

namespace schism::cli {

struct Reproduction {
  common::HereticReproduction source;
  v1::StudySpec spec;  // normalized; its prompt sets are files on this machine
  v1::Trial trial;     // the recorded parameters, as a study's trial carries them
};

// Reads `path` and maps it onto schism: the model is `model_override` when given, else the
// recorded one, which must then be a path on this machine (a Hub ID is refused, naming it).
// Heretic's default Hub datasets (mlabonne/harmless_alpaca, mlabonne/harmful_behaviors) map to
// the data directory's files derived from them, by split ("train[:400]" -> harmless_train.txt
// "[:400]"), refusing a slice the local copy does not hold; a dataset that is a file on disk is
// read as one; any other Hub dataset is refused by name.
absl::StatusOr<Reproduction> LoadReproduction(const std::string& path,
                                              const std::optional<std::string>& model_override);

// The prepare step of the reproduction's study on `worker` (loads the model): the report with
// the directions artifact, the baseline refusals and the detected response prefix (also set
// into r->spec, as a coordinator would).
absl::StatusOr<v1::ReportResultRequest> PrepareReproduction(worker::TrialWorker& worker,
                                                            Reproduction* r);

}  // namespace schism::cli

#endif  // SCHISM_CLI_REPRODUCTION_H_
