// The coordinator's state machine, independent of gRPC (docs/architecture.md): the queue of
// studies, the TPE sampler of each, the leases handed to workers, and the store every change is
// journaled to (as journal::Record) before it is acknowledged. Thread-safe; every public method
// takes the lock. The implementation is split by concern:
//   study_manager.cc   studies: submit, list, get, cancel, metrics; the shared helpers
//   trial_leasing.cc   trials: asking the sampler, leases, reports, expiry, finishing
//   export_queue.cc    exports: requests, export leases, their reports
//   study_recovery.cc  replaying the journal into studies, exports and leases
//
// Invariants: a trial number is asked once and never reused; a trial counts as COMPLETE at most
// once (the first accepted report of a live lease); an expired lease's trials are re-queued with
// the same parameters (attempt + 1). A trial is FAILED only when max_attempts *different*
// workers reported a failure for it, or max_attempts different workers lost its lease (a poison
// trial that kills whoever runs it), or after 3 x max_attempts leases whatever the cause; a
// worker that merely vanished is not the trial's fault, and a worker is offered trials it has
// not failed before those it has. A FAILED trial is replaced by a new ask, so a study FINISHES with
// exactly n_trials COMPLETE trials (failed ones listed beside them), or FAILS with a reason once
// more than max_failed_trials trials failed. Finishing is derived from the trials, also on
// recovery.
#ifndef SCHISM_COORDINATOR_STUDY_MANAGER_H_
#define SCHISM_COORDINATOR_STUDY_MANAGER_H_

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "coordinator/journal_record.h"
#include "coordinator/mutex.h"
#include "coordinator/study_spec.h"
#include "coordinator/study_store.h"
#include "coordinator/tpe/tpe_sampler.h"
#include "schism/v1/coordinator.pb.h"

namespace schism::coordinator {

using Clock = std::chrono::steady_clock;

// A consistent snapshot of the counts the HTTP side port exports as Prometheus gauges.
struct ManagerMetrics {
  std::map<v1::StudyState, int> studies;
  std::map<v1::TrialState, int> trials;
  std::map<v1::ExportState, int> exports;
  int active_leases = 0;
  int registered_workers = 0;
  int64_t store_errors = 0;  // journal writes the store refused (each also logged)
};

class StudyManager {
 public:
  explicit StudyManager(StudyStore* store, std::function<Clock::time_point()> clock = Clock::now);
  StudyManager(const StudyManager&) = delete;
  StudyManager& operator=(const StudyManager&) = delete;

  // Replays the store: studies come back in their last state, and the leases that were out come
  // back too (a fresh lease_seconds each), so a worker that was mid-trial reports as if nothing
  // happened; a lease whose worker is gone expires and re-queues as usual.
  absl::Status Recover();

  absl::StatusOr<std::string> Submit(v1::StudySpec spec);
  std::vector<v1::StudySummary> List();
  // One page of List (see ListStudiesRequest); errors name a malformed token.
  absl::StatusOr<v1::ListStudiesResponse> ListPage(const v1::ListStudiesRequest& request);
  absl::StatusOr<v1::StudyDetail> Get(const std::string& study_id);
  absl::StatusOr<v1::StudySummary> Cancel(const std::string& study_id);

  std::string RegisterWorker(const v1::RegisterRequest& request);
  // Hands out work, or an empty item (no lease id) when there is none right now. With
  // request.peek(): only names the study whose work Acquire would hand this worker now (study_id,
  // spec, an empty prepare or evaluate; no lease), changing nothing.
  absl::StatusOr<v1::WorkItem> Acquire(const v1::AcquireWorkRequest& request);
  // Waits until something changed (a report, an expiry, a submission) or `timeout` passed.
  void WaitForChange(std::chrono::milliseconds timeout);
  absl::StatusOr<int64_t> Heartbeat(const std::string& worker_id, const std::string& lease_id);
  absl::Status Report(const v1::ReportResultRequest& request);
  absl::Status ReportFailure(const v1::ReportFailureRequest& request);
  absl::StatusOr<std::string> Artifact(const std::string& study_id);

  // Exports (docs/architecture.md): queued per request, leased only to workers with the EXPORT
  // role, and journaled in the study's log so a restarted coordinator still knows them (a RUNNING
  // export is QUEUED again, like a running trial).
  absl::StatusOr<v1::ExportJob> RequestExport(const v1::RequestExportRequest& request);
  absl::StatusOr<v1::ExportJob> GetExport(const std::string& export_id);

  ManagerMetrics Metrics();

  // Re-queues the trials of leases past their deadline. List, Get, GetExport, Metrics, Acquire,
  // Heartbeat and Report do this first too, and `schism coordinator` calls it every 200 ms, so a
  // lease is re-queued within that long of its deadline even when nobody asks.
  void ExpireLeases();
  // Re-queues every lease Recover restored that no worker has spoken for yet, at once and
  // without counting against its trials: for `schism run`, whose workers died with it.
  void ReleaseRestoredLeases();

 private:
  struct TrialEntry {
    int64_t number = 0;
    v1::TrialState state = v1::TRIAL_STATE_WAITING;
    std::map<std::string, double> params;  // TPE internal values
    int attempts = 0;                      // leases handed out
    std::set<std::string> failed_workers;  // workers that reported a failure (or invalid scores)
    std::set<std::string> lost_workers;    // workers whose lease on it expired
    std::string error;                     // why it FAILED
    v1::TrialScores scores;
  };
  struct Study {
    std::string id;
    v1::StudySpec spec;
    v1::StudyState state = v1::STUDY_STATE_QUEUED;
    int64_t order = 0;
    int num_layers = 0;
    int baseline_refusals = -1;
    v1::TrialScores baseline;  // the unmodified model under the study's other scorers
    int prepare_attempts = 0;
    std::string error;
    std::vector<TrialEntry> trials;
    tpe::SearchSpace space;
    std::unique_ptr<tpe::TpeSampler> sampler;
  };
  // A lease's work, mirroring WorkItem's `oneof work`.
  struct PrepareLease {};
  struct TrialsLease {
    std::vector<int64_t> trials;
  };
  struct ExportLease {
    std::string export_id;
  };
  struct Lease {
    std::string id, study_id, worker_id;
    std::variant<PrepareLease, TrialsLease, ExportLease> work;
    Clock::time_point deadline;
    // Restored by Recover and not heard from since: its expiry says nothing about the trials.
    bool restored_unheard = false;
  };
  using LeaseCause = journal::LeaseCause;

  // --- study_manager.cc: shared helpers ---
  // Appends a record to the store. A refused write is logged and counted (StoreRefused) here,
  // whether or not the caller also hands the error on (a refused report goes back to its worker).
  absl::Status Journal(const std::string& study_id, const journal::Record& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Journals a record whose loss is not the caller's to report (an expiry, a background change).
  void JournalOrLog(const std::string& study_id, const journal::Record& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Logs and counts (Metrics().store_errors) a write the store refused; `what` names it.
  void StoreRefused(const std::string& what, const absl::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartTrials(Study* study, uint32_t seed_offset);
  v1::Trial TrialProto(const Study& study, const TrialEntry& t) const;
  // The study's Pareto front (Heretic's order) over its COMPLETE trials.
  static std::vector<const TrialEntry*> Front(const Study& study);
  v1::StudySummary Summary(const Study& study) const;
  int64_t DeadlineUnixMs(Clock::time_point deadline) const;
  // The study of a lease (leases only ever name studies that exist).
  Study& StudyOf(const Lease& lease) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return *studies_.at(lease.study_id);
  }

  // --- trial_leasing.cc ---
  std::optional<int64_t> AskTrial(Study* study) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<v1::WorkItem> AcquireTrials(const v1::AcquireWorkRequest& request)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Picks the trials a lease on `study` takes for `worker` (empty: none to give).
  // Studies in the order a trial worker holding `loaded_model` is served: priority, then
  // affinity to the loaded model, then submission order.
  std::vector<Study*> ServiceOrder(const std::string& loaded_model)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether Acquire would find work in `study` now (prepare, a waiting trial, or room to ask).
  bool HasTrialWork(const Study& study) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<int64_t> PickTrials(Study* study, const std::string& worker, int capacity)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ReportPrepared(const Lease& lease, const v1::ReportResultRequest& request)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ReportTrials(const Lease& lease, const TrialsLease& work,
                            const v1::ReportResultRequest& request)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // How a lease ended without a result: the worker vanished (kExpired), said it could not do it
  // (kWorkerFailed), or a lease restored after a restart expired without a word from its worker
  // (kRestart: the worker most likely died with the old coordinator, as `schism run`'s own do).
  void RequeueLease(const Lease& lease, LeaseCause end, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // FINISHED once n_trials trials are COMPLETE and nothing runs; FAILED past max_failed_trials.
  void MaybeFinish(Study* study) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static int MaxFailedTrials(const v1::StudySpec& spec);
  void ExpireLeasesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // --- export_queue.cc ---
  absl::StatusOr<v1::WorkItem> AcquireExport(const v1::AcquireWorkRequest& request)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ReportExport(const ExportLease& work, const v1::ReportResultRequest& request)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Journals the export's current state under its study.
  absl::Status JournalExport(const v1::ExportJob& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RequeueExport(const Lease& lease, const std::string& export_id, const std::string& reason,
                     bool permanent) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // --- study_recovery.cc ---
  // Rebuilds one study (and its exports and leases) from its records; a record that does not
  // decode, or names a trial that was never asked, is DataLoss naming the study.
  absl::Status RecoverStudy(const std::string& id, const std::vector<std::string>& records)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  StudyStore* const store_;
  const std::function<Clock::time_point()> clock_;
  Mutex mu_;
  CondVar changed_;
  std::map<std::string, std::unique_ptr<Study>> studies_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Lease> leases_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::ExportJob> exports_ ABSL_GUARDED_BY(mu_);  // by export id
  std::vector<std::string> export_order_ ABSL_GUARDED_BY(mu_);         // request order
  std::set<std::string> expired_leases_ ABSL_GUARDED_BY(mu_), finished_leases_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> workers_ ABSL_GUARDED_BY(mu_);
  int64_t next_order_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t store_errors_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace schism::coordinator

#endif  // SCHISM_COORDINATOR_STUDY_MANAGER_H_
