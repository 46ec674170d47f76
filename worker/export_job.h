// One export, start to finish (docs/architecture.md#export-output): the merged model and/or the
// PEFT adapter written into a staging folder next to the destination, reproduce.json and a model
// card beside them, every output hashed, then one rename into place. Used by `schism export`
// (local) and by the export worker (work from the coordinator).
//
// Layout of the destination: format "merged": the Hugging Face folder; "adapter": the PEFT
// adapter folder; "both": the merged folder with the adapter in adapter/. reproduce.json and
// README.md (the model card) are at the top in every case.
#ifndef SCHISM_WORKER_EXPORT_JOB_H_
#define SCHISM_WORKER_EXPORT_JOB_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "schism/v1/trial.pb.h"
#include "worker/runtime/model_export.h"

namespace schism::worker {

struct ExportScores {
  int refusals = 0;
  int refusal_prompts = 0;
  double kl_divergence = 0;
  int baseline_refusals = -1;  // -1: unknown
  // The study's other scorers (judge, perplexity) on this trial and on the original, when they
  // ran (only Pareto candidates are judged).
  std::optional<int> judge_refusals, baseline_judge_refusals;
  int judge_prompts = 0;
  std::optional<double> perplexity, baseline_perplexity;
};

// The other scorers' fields of `trial` and `baseline` (a study's TrialScores) into `scores`.
void SetOtherScores(const v1::TrialScores& trial, const v1::TrialScores& baseline,
                    ExportScores* scores);

struct ExportRequest {
  std::string source_model;       // full-precision HF folder or .gguf
  std::string directions_path;    // the study's directions artifact (schism's format)
  std::string directions_origin;  // what reproduce.json names as their origin; empty: the path
  std::string params_json;        // the trial's parameters, as the optimizer names them
  std::string format = "merged";  // merged | adapter | both
  model::MergeOptions merge;
  std::string destination;  // absolute, already confined by the caller
  bool overwrite = false;
  // Provenance for reproduce.json and the card; empty/absent when unknown.
  std::string study_id;
  std::string study_spec_json;
  int64_t trial_number = -1;
  std::optional<ExportScores> scores;
};

struct ExportedFile {
  std::string path;  // relative to the destination
  uint64_t bytes = 0;
  std::string sha256;
};

struct ExportResult {
  std::string destination;
  std::vector<ExportedFile> files;
  model::MergeStats stats;
  double seconds = 0;
};

// "merged" | "adapter" | "both"; anything else is INVALID_ARGUMENT naming it.
absl::Status ValidateExportFormat(const std::string& format);

absl::StatusOr<ExportResult> RunExport(const ExportRequest& request);

// When `destination` already holds the export of this study's trial in this format, intact
// (every output listed in its reproduce.json present with that SHA-256), its files; NOT_FOUND
// otherwise, DATA_LOSS naming the first file that no longer matches. The export worker asks this
// before writing so a re-delivered export (its first lease expired just as it finished) is
// reported instead of failing on the existing folder.
absl::StatusOr<std::vector<ExportedFile>> FindFinishedExport(const std::string& destination,
                                                             const std::string& study_id,
                                                             int64_t trial_number,
                                                             const std::string& format);

}  // namespace schism::worker

#endif  // SCHISM_WORKER_EXPORT_JOB_H_
