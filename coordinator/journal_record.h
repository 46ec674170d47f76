// The records of a study's journal, as a typed codec (docs/journal.md describes the format).
// Every change of a study is one record; the store keeps them in append order and a restarted
// coordinator replays them. Each record is one JSON object whose "type" names the tag below;
// the field names are the on-disk format and never change meaning (old journals stay readable:
// fields added later are optional when decoding).
//
// One place encodes (EncodeRecord) and one decodes (DecodeRecord); decoding never throws, and a
// record that is not what its tag promises is a DataLoss Status naming its position.
#ifndef SCHISM_COORDINATOR_JOURNAL_RECORD_H_
#define SCHISM_COORDINATOR_JOURNAL_RECORD_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "absl/status/statusor.h"
#include "schism/v1/coordinator.pb.h"

namespace schism::coordinator::journal {

// "submitted": the normalized spec, as proto JSON, and the submission order.
struct Submitted {
  v1::StudySpec spec;
  int64_t order = 0;
};
// "prepared": what the prepare lease found; the study runs from here.
struct Prepared {
  int num_layers = 0;
  int baseline_refusals = 0;
  std::optional<std::string> response_prefix;  // absent in journals before it was recorded
  // The unmodified model under the study's other scorers (judge, perplexity); empty without.
  v1::TrialScores baseline;
};
// "prepare_failed": the study failed before its first trial.
struct PrepareFailed {
  std::string reason;
};
// "asked": the sampler's new trial, with TPE-internal parameter values.
struct Asked {
  int64_t number = 0;
  std::map<std::string, double> params;
};
// "leased": a trial went out under a lease.
struct Leased {
  int64_t number = 0;
  int attempt = 0;
  std::string worker, lease;  // empty in journals before leases survived restarts
};
// "completed": a trial's accepted scores; the other scorers' fields, when any were reported, as
// proto JSON under "other_scores".
struct Completed {
  int64_t number = 0;
  v1::TrialScores scores;
};
// Why a lease ended without a result; the journal spells them "expired", "worker_failed",
// "restart".
enum class LeaseCause { kExpired, kWorkerFailed, kRestart };
// "requeued" (failed = false) or "failed" (failed = true): a trial came back from a lease.
struct Returned {
  int64_t number = 0;
  bool failed = false;
  std::string reason;                       // what ended the lease
  std::optional<std::string> worker;        // absent in old journals
  LeaseCause cause = LeaseCause::kExpired;  // old journals recorded expiries only
  std::string error;                        // why the trial FAILED (failed only)
};
// "study_failed": the study gave up (too many failed trials).
struct StudyFailed {
  std::string reason;
};
struct Finished {};   // "finished"
struct Cancelled {};  // "cancelled"
// "export": an export job's state, as proto JSON (each change appends the whole job).
struct Export {
  v1::ExportJob job;
};

using Record = std::variant<Submitted, Prepared, PrepareFailed, Asked, Leased, Completed, Returned,
                            StudyFailed, Finished, Cancelled, Export>;

// The record's tag as the journal spells it ("submitted", "failed", ...).
std::string_view TagOf(const Record& record);

std::string EncodeRecord(const Record& record);

// Decodes one record; `position` (its index in the study's journal) only names it in errors:
// DataLoss "journal record 7 (asked): field \"number\" must be an integer".
absl::StatusOr<Record> DecodeRecord(std::string_view text, size_t position);

}  // namespace schism::coordinator::journal

#endif  // SCHISM_COORDINATOR_JOURNAL_RECORD_H_
