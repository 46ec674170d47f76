// StudyManager, part 4: recovery. Replays each study's journal (journal_record.h) into its
// state, its exports and the leases that were out when the coordinator stopped. Nothing here
// throws: a record that does not decode, or names a trial that was never asked, is DataLoss
// naming the study and the record's position.
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "coordinator/study_manager.h"

namespace schism::coordinator {
namespace {

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

}  // namespace

absl::Status StudyManager::Recover() {
  auto all = store_->ReplayAll();
  if (!all.ok()) return all.status();
  MutexLock lock(&mu_);
  for (const auto& [id, records] : *all) {
    if (auto s = RecoverStudy(id, records); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("study ", id, ": ", s.message()));
    }
  }
  return absl::OkStatus();
}

absl::Status StudyManager::RecoverStudy(const std::string& id,
                                        const std::vector<std::string>& records) {
  auto study = std::make_unique<Study>();
  study->id = id;
  std::map<int64_t, std::pair<std::string, std::string>>
      held;                                                  // trial -> (lease, worker) still out
  std::map<std::string, std::vector<int64_t>> lease_trials;  // every trial a lease held
  for (size_t position = 0; position < records.size(); ++position) {
    auto record = journal::DecodeRecord(records[position], position);
    if (!record.ok()) return record.status();
    // The trial a record names; one that was never asked is data loss, not an index past the end.
    TrialEntry* trial = nullptr;
    auto find_trial = [&](int64_t number) -> absl::Status {
      if (number < 0 || number >= static_cast<int64_t>(study->trials.size()) ||
          study->trials[number].number != number) {
        return absl::DataLossError(
            absl::StrCat("journal record ", position, " (", std::string(journal::TagOf(*record)),
                         ") names trial ", number, ", which was never asked"));
      }
      trial = &study->trials[number];
      return absl::OkStatus();
    };
    absl::Status applied =
        std::visit(Overloaded{
                       [&](const journal::Submitted& r) {
                         study->spec = r.spec;
                         study->order = r.order;
                         next_order_ = std::max(next_order_, study->order + 1);
                         return absl::OkStatus();
                       },
                       [&](const journal::Prepared& r) {
                         study->num_layers = r.num_layers;
                         if (r.response_prefix) study->spec.set_response_prefix(*r.response_prefix);
                         study->baseline_refusals = r.baseline_refusals;
                         study->baseline = r.baseline;
                         study->state = v1::STUDY_STATE_RUNNING;
                         StartTrials(study.get(), 0);
                         return absl::OkStatus();
                       },
                       [&](const journal::PrepareFailed& r) {
                         study->state = v1::STUDY_STATE_FAILED;
                         study->error = r.reason;
                         return absl::OkStatus();
                       },
                       [&](const journal::Asked& r) {
                         if (r.number != static_cast<int64_t>(study->trials.size())) {
                           return absl::DataLossError(absl::StrCat(
                               "journal record ", position, " (asked): trial ", r.number,
                               " out of order (expected ", study->trials.size(), ")"));
                         }
                         TrialEntry t;
                         t.number = r.number;
                         t.params = r.params;
                         study->trials.push_back(std::move(t));
                         return absl::OkStatus();
                       },
                       [&](const journal::Leased& r) {
                         if (auto s = find_trial(r.number); !s.ok()) return s;
                         trial->attempts = r.attempt;
                         held[r.number] = {r.lease, r.worker};
                         lease_trials[r.lease].push_back(r.number);
                         return absl::OkStatus();
                       },
                       [&](const journal::Completed& r) {
                         if (auto s = find_trial(r.number); !s.ok()) return s;
                         held.erase(r.number);
                         trial->state = v1::TRIAL_STATE_COMPLETE;
                         trial->scores = r.scores;
                         return absl::OkStatus();
                       },
                       [&](const journal::Returned& r) {
                         if (auto s = find_trial(r.number); !s.ok()) return s;
                         held.erase(r.number);
                         // Records before the worker was journaled count as one unknown worker
                         // each.
                         const std::string worker =
                             r.worker.value_or(absl::StrCat("unrecorded-", trial->attempts));
                         if (r.cause == journal::LeaseCause::kExpired)
                           trial->lost_workers.insert(worker);
                         if (r.cause == journal::LeaseCause::kWorkerFailed)
                           trial->failed_workers.insert(worker);
                         trial->state = r.failed ? v1::TRIAL_STATE_FAILED : v1::TRIAL_STATE_WAITING;
                         if (r.failed) trial->error = r.error;
                         return absl::OkStatus();
                       },
                       [&](const journal::StudyFailed& r) {
                         study->state = v1::STUDY_STATE_FAILED;
                         study->error = r.reason;
                         return absl::OkStatus();
                       },
                       [&](const journal::Finished&) {
                         study->state = v1::STUDY_STATE_FINISHED;
                         return absl::OkStatus();
                       },
                       [&](const journal::Cancelled&) {
                         study->state = v1::STUDY_STATE_CANCELLED;
                         return absl::OkStatus();
                       },
                       [&](const journal::Export& r) {
                         v1::ExportJob job = r.job;
                         // Its lease died with the old coordinator.
                         if (job.state() == v1::EXPORT_STATE_RUNNING)
                           job.set_state(v1::EXPORT_STATE_QUEUED);
                         if (!exports_.count(job.export_id()))
                           export_order_.push_back(job.export_id());
                         exports_[job.export_id()] = job;
                         return absl::OkStatus();
                       },
                   },
                   *record);
    if (!applied.ok()) return applied;
  }
  if (study->sampler) StartTrials(study.get(), static_cast<uint32_t>(study->trials.size()));
  // Leases that were out when the coordinator stopped live on: their workers keep computing and
  // may report. Each gets a fresh lease_seconds (heartbeats were not journaled); a worker that
  // is gone lets it expire as usual. Records without a lease id (older journals) re-queue.
  if (study->state == v1::STUDY_STATE_RUNNING) {
    // A lease keeps all its trials, also those whose completion was journaled before the
    // crash cut its report short: the worker's retry carries every result.
    std::map<std::string, Lease> recovered;
    for (const auto& [number, holder] : held) {
      if (holder.first.empty() || holder.second.empty()) continue;
      Lease& lease = recovered[holder.first];
      lease.id = holder.first;
      lease.study_id = id;
      lease.worker_id = holder.second;
      lease.work = TrialsLease{lease_trials[holder.first]};
      lease.deadline = clock_() + std::chrono::seconds(study->spec.lease_seconds());
      lease.restored_unheard = true;
      study->trials[number].state = v1::TRIAL_STATE_RUNNING;
    }
    for (auto& [lease_id, lease] : recovered) {
      workers_.insert(lease.worker_id);  // it reports under the id it registered with
      leases_[lease_id] = std::move(lease);
    }
  }
  // A crash between a study's last completion and its `finished` record must not leave it
  // RUNNING with nothing left to run: completion is derived from the trials.
  MaybeFinish(study.get());
  studies_[id] = std::move(study);
  return absl::OkStatus();
}

}  // namespace schism::coordinator
