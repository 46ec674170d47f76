// StudyManager, part 2: trials. Asking the sampler, handing out prepare and trial leases,
// heartbeats, reports and failures, lease expiry, and deriving a study's end from its trials.
#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "coordinator/manager_ids.h"
#include "coordinator/objectives.h"
#include "coordinator/study_manager.h"

namespace schism::coordinator {

std::optional<int64_t> StudyManager::AskTrial(Study* study) {
  // FAILED trials do not count: each is replaced by a new ask (MaybeFinish caps how many).
  int live = 0, complete = 0;
  for (const TrialEntry& t : study->trials) {
    live += t.state != v1::TRIAL_STATE_FAILED;
    complete += t.state == v1::TRIAL_STATE_COMPLETE;
  }
  if (live >= study->spec.n_trials()) return std::nullopt;
  // The sampler reads the history only after its random startup trials; building it for every
  // ask made a 10,000-trial study's asks O(trials) under the manager's lock (measured:
  // coordinator_load_bench, 1,000 workers).
  std::vector<tpe::TrialRecord> records;
  const bool startup = complete < study->sampler->n_startup_trials();
  if (!startup) {
    for (const TrialEntry& t : study->trials) {
      tpe::TrialRecord r;
      r.number = t.number;
      r.params = t.params;
      for (const auto& [name, d] : study->space) r.distributions.emplace(name, d);
      if (t.state == v1::TRIAL_STATE_COMPLETE) {
        r.state = tpe::TrialState::kComplete;
        r.values = TrialObjectives(study->spec, study->baseline_refusals, t.scores);
      } else if (t.state == v1::TRIAL_STATE_FAILED) {
        r.state = tpe::TrialState::kFail;
      } else {
        r.state = tpe::TrialState::kRunning;  // waiting or leased: both pending for the liar
      }
      records.push_back(std::move(r));
    }
  }
  TrialEntry t;
  t.number = static_cast<int64_t>(study->trials.size());
  t.params = study->sampler->SampleTrial(records, t.number, study->space);
  if (!Journal(study->id, journal::Asked{t.number, t.params}).ok()) return std::nullopt;
  study->trials.push_back(std::move(t));
  return study->trials.back().number;
}

absl::StatusOr<v1::WorkItem> StudyManager::Acquire(const v1::AcquireWorkRequest& request) {
  MutexLock lock(&mu_);
  if (!workers_.count(request.worker_id())) {
    return absl::FailedPreconditionError(
        absl::StrCat("unknown worker \"", request.worker_id(), "\"; register first"));
  }
  ExpireLeasesLocked();
  if (request.role() == v1::WORKER_ROLE_EXPORT) {
    if (request.peek()) return v1::WorkItem();  // export workers load their source per job
    return AcquireExport(request);
  }
  return AcquireTrials(request);
}

std::vector<int64_t> StudyManager::PickTrials(Study* study, const std::string& worker,
                                              int capacity) {
  // Waiting trials this worker has not failed or lost first, then new asks; a trial it failed
  // before only when there is nothing else (one broken worker must not burn through a trial's
  // attempts alone, nor a lone worker starve).
  std::vector<int64_t> picked;
  auto room = [&](int limit) { return static_cast<int>(picked.size()) < limit; };
  auto tried_here = [&](const TrialEntry& t) {
    return t.failed_workers.count(worker) || t.lost_workers.count(worker);
  };
  for (const TrialEntry& t : study->trials) {
    if (room(capacity) && t.state == v1::TRIAL_STATE_WAITING && !tried_here(t))
      picked.push_back(t.number);
  }
  while (room(std::min(capacity, study->spec.trials_per_lease()))) {
    auto number = AskTrial(study);
    if (!number) break;
    picked.push_back(*number);
  }
  if (picked.empty()) {
    for (const TrialEntry& t : study->trials) {
      if (room(capacity) && t.state == v1::TRIAL_STATE_WAITING) picked.push_back(t.number);
    }
  }
  return picked;
}

std::vector<StudyManager::Study*> StudyManager::ServiceOrder(const std::string& loaded_model) {
  std::vector<Study*> order;
  for (auto& [id, s] : studies_) order.push_back(s.get());
  std::sort(order.begin(), order.end(), [&](const Study* a, const Study* b) {
    if (a->spec.priority() != b->spec.priority()) return a->spec.priority() > b->spec.priority();
    const bool a_loaded = a->spec.model() == loaded_model;
    const bool b_loaded = b->spec.model() == loaded_model;
    if (a_loaded != b_loaded) return a_loaded;
    return a->order < b->order;
  });
  return order;
}

bool StudyManager::HasTrialWork(const Study& study) const {
  if (study.state == v1::STUDY_STATE_QUEUED) return true;
  if (study.state != v1::STUDY_STATE_RUNNING) return false;
  int live = 0;
  for (const TrialEntry& t : study.trials) {
    if (t.state == v1::TRIAL_STATE_WAITING) return true;
    live += t.state != v1::TRIAL_STATE_FAILED;
  }
  return live < study.spec.n_trials();
}

absl::StatusOr<v1::WorkItem> StudyManager::AcquireTrials(const v1::AcquireWorkRequest& request) {
  const int capacity = std::clamp(request.capacity(), 1, 64);
  const std::vector<Study*> order = ServiceOrder(request.loaded_model());
  v1::WorkItem item;
  if (request.peek()) {
    for (const Study* study : order) {
      if (!HasTrialWork(*study)) continue;
      item.set_study_id(study->id);
      *item.mutable_spec() = study->spec;
      if (study->state == v1::STUDY_STATE_QUEUED) {
        item.mutable_prepare();
      } else {
        item.mutable_evaluate();
      }
      return item;
    }
    return item;
  }
  for (Study* study : order) {
    Lease lease;
    lease.study_id = study->id;
    lease.worker_id = request.worker_id();
    lease.deadline = clock_() + std::chrono::seconds(study->spec.lease_seconds());
    lease.id = RandomId("l");
    if (study->state == v1::STUDY_STATE_QUEUED) {
      lease.work = PrepareLease{};
      study->state = v1::STUDY_STATE_PREPARING;
      ++study->prepare_attempts;
      item.mutable_prepare();
    } else if (study->state == v1::STUDY_STATE_RUNNING) {
      TrialsLease work{PickTrials(study, request.worker_id(), capacity)};
      if (work.trials.empty()) continue;
      for (int64_t number : work.trials) {
        TrialEntry& t = study->trials[number];
        t.state = v1::TRIAL_STATE_RUNNING;
        ++t.attempts;
        JournalOrLog(study->id, journal::Leased{number, t.attempts, request.worker_id(), lease.id});
        *item.mutable_evaluate()->add_trials() = TrialProto(*study, t);
      }
      lease.work = std::move(work);
      // Workers run the study's other scorers only on trials that would join this front.
      if (study->spec.has_judge() || study->spec.has_perplexity()) {
        for (const TrialEntry* t : Front(*study)) {
          v1::Trial* member = item.mutable_evaluate()->add_pareto_front();
          member->set_number(t->number);
          member->mutable_scores()->set_refusals(t->scores.refusals());
          member->mutable_scores()->set_refusal_prompts(t->scores.refusal_prompts());
          member->mutable_scores()->set_kl_divergence(t->scores.kl_divergence());
        }
      }
    } else {
      continue;
    }
    item.set_lease_id(lease.id);
    item.set_study_id(study->id);
    *item.mutable_spec() = study->spec;
    item.set_lease_deadline_unix_ms(DeadlineUnixMs(lease.deadline));
    leases_[lease.id] = std::move(lease);
    return item;
  }
  return item;
}

absl::StatusOr<int64_t> StudyManager::Heartbeat(const std::string& worker_id,
                                                const std::string& lease_id) {
  MutexLock lock(&mu_);
  ExpireLeasesLocked();
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "lease ", lease_id,
        expired_leases_.count(lease_id) ? " expired; its work was re-queued" : " is unknown"));
  }
  if (it->second.worker_id != worker_id) {
    return absl::PermissionDeniedError(
        absl::StrCat("lease ", lease_id, " belongs to another worker"));
  }
  it->second.deadline = clock_() + std::chrono::seconds(StudyOf(it->second).spec.lease_seconds());
  it->second.restored_unheard = false;
  return DeadlineUnixMs(it->second.deadline);
}

int StudyManager::MaxFailedTrials(const v1::StudySpec& spec) {
  return spec.max_failed_trials() > 0 ? spec.max_failed_trials()
                                      : std::max(3, spec.n_trials() / 10);
}

void StudyManager::RequeueLease(const Lease& lease, LeaseCause end, const std::string& reason) {
  Study& study = StudyOf(lease);
  expired_leases_.insert(lease.id);
  if (const auto* work = std::get_if<ExportLease>(&lease.work)) {
    RequeueExport(lease, work->export_id, reason, /*permanent=*/false);
    return;
  }
  if (std::holds_alternative<PrepareLease>(lease.work)) {
    if (study.prepare_attempts >= study.spec.max_attempts()) {
      study.state = v1::STUDY_STATE_FAILED;
      study.error =
          "prepare failed " + std::to_string(study.prepare_attempts) + " times: " + reason;
      JournalOrLog(study.id, journal::PrepareFailed{study.error});
    } else if (study.state == v1::STUDY_STATE_PREPARING) {
      study.state = v1::STUDY_STATE_QUEUED;
    }
    return;
  }
  for (int64_t number : std::get<TrialsLease>(lease.work).trials) {
    TrialEntry& t = study.trials[number];
    if (t.state != v1::TRIAL_STATE_RUNNING) continue;
    if (end == LeaseCause::kExpired) t.lost_workers.insert(lease.worker_id);
    if (end == LeaseCause::kWorkerFailed) t.failed_workers.insert(lease.worker_id);
    const int max = study.spec.max_attempts();
    std::string error;
    if (static_cast<int>(t.lost_workers.size()) >= max) {
      error = absl::StrCat("outlived ", t.lost_workers.size(), " workers whose leases expired");
    } else if (static_cast<int>(t.failed_workers.size()) >= max) {
      error = absl::StrCat(t.failed_workers.size(), " workers reported a failure");
    } else if (t.attempts >= 3 * max) {
      error = absl::StrCat("leased ", t.attempts, " times without a result");
    }
    journal::Returned record{number, /*failed=*/!error.empty(), reason, lease.worker_id, end, ""};
    if (record.failed) {
      t.state = v1::TRIAL_STATE_FAILED;
      t.error = absl::StrCat(error, "; last: ", reason);
      record.error = t.error;
    } else {
      t.state = v1::TRIAL_STATE_WAITING;
    }
    JournalOrLog(study.id, record);
  }
  MaybeFinish(&study);
}

void StudyManager::MaybeFinish(Study* study) {
  if (study->state != v1::STUDY_STATE_RUNNING) return;
  int completed = 0, failed = 0, open = 0;
  std::string last_error;
  for (const TrialEntry& t : study->trials) {
    if (t.state == v1::TRIAL_STATE_COMPLETE) {
      ++completed;
    } else if (t.state == v1::TRIAL_STATE_FAILED) {
      ++failed;
      last_error = t.error;
    } else {
      ++open;
    }
  }
  if (failed > MaxFailedTrials(study->spec)) {
    study->state = v1::STUDY_STATE_FAILED;
    study->error = absl::StrCat(failed, " trials failed, more than max_failed_trials = ",
                                MaxFailedTrials(study->spec), "; last: ", last_error);
    JournalOrLog(study->id, journal::StudyFailed{study->error});
    return;
  }
  if (completed < study->spec.n_trials() || open > 0) return;
  study->state = v1::STUDY_STATE_FINISHED;
  JournalOrLog(study->id, journal::Finished{});
}

void StudyManager::ExpireLeases() {
  MutexLock lock(&mu_);
  ExpireLeasesLocked();
}

void StudyManager::ReleaseRestoredLeases() {
  MutexLock lock(&mu_);
  for (auto it = leases_.begin(); it != leases_.end();) {
    if (it->second.restored_unheard) {
      RequeueLease(it->second, LeaseCause::kRestart, "its worker stopped with the coordinator");
      it = leases_.erase(it);
    } else {
      ++it;
    }
  }
  changed_.SignalAll();
}

void StudyManager::ExpireLeasesLocked() {
  const auto now = clock_();
  bool any = false;
  for (auto it = leases_.begin(); it != leases_.end();) {
    if (it->second.deadline <= now) {
      if (it->second.restored_unheard) {
        RequeueLease(it->second, LeaseCause::kRestart,
                     "lease restored after a coordinator restart expired unheard");
      } else {
        RequeueLease(it->second, LeaseCause::kExpired, "lease expired");
      }
      it = leases_.erase(it);
      any = true;
    } else {
      ++it;
    }
  }
  if (any) changed_.SignalAll();
}

absl::Status StudyManager::Report(const v1::ReportResultRequest& request) {
  MutexLock lock(&mu_);
  ExpireLeasesLocked();
  if (finished_leases_.count(request.lease_id())) return absl::OkStatus();  // idempotent repeat
  auto it = leases_.find(request.lease_id());
  if (it == leases_.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("lease ", request.lease_id(),
                     expired_leases_.count(request.lease_id())
                         ? " expired before this report; its work was re-queued"
                         : " is unknown"));
  }
  const Lease lease = it->second;
  if (lease.worker_id != request.worker_id()) {
    return absl::PermissionDeniedError(
        absl::StrCat("lease ", lease.id, " belongs to another worker"));
  }
  absl::Status status;
  if (const auto* work = std::get_if<ExportLease>(&lease.work)) {
    status = ReportExport(*work, request);
  } else if (std::holds_alternative<PrepareLease>(lease.work)) {
    status = ReportPrepared(lease, request);
  } else {
    status = ReportTrials(lease, std::get<TrialsLease>(lease.work), request);
  }
  if (!status.ok()) return status;
  leases_.erase(lease.id);
  finished_leases_.insert(lease.id);
  changed_.SignalAll();
  return absl::OkStatus();
}

namespace {

// The scores of the study's other scorers, when reported: counts within their prompts, a finite
// perplexity of at least 1 (exp of a mean negative log-likelihood; float32 rounding aside).
absl::Status CheckOtherScores(const v1::TrialScores& s) {
  if (s.judge_prompts() < 0 || s.judge_unclear() < 0 ||
      (s.has_judge_refusals() &&
       (s.judge_refusals() < 0 || s.judge_refusals() + s.judge_unclear() > s.judge_prompts()))) {
    return absl::InvalidArgumentError(absl::StrCat("judge refusals ", s.judge_refusals(), " (",
                                                   s.judge_unclear(), " unclear) of ",
                                                   s.judge_prompts()));
  }
  if (s.has_perplexity() && !(std::isfinite(s.perplexity()) && s.perplexity() >= 0.999))
    return absl::InvalidArgumentError(absl::StrCat("perplexity ", s.perplexity()));
  return absl::OkStatus();
}

}  // namespace

absl::Status StudyManager::ReportPrepared(const Lease& lease,
                                          const v1::ReportResultRequest& request) {
  Study& study = StudyOf(lease);
  if (request.artifact().empty())
    return absl::InvalidArgumentError("prepare report without an artifact");
  const int num_layers = request.num_layers();
  if (num_layers < 1 || num_layers > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("prepare report: num_layers ", request.num_layers(), " is out of range"));
  }
  if (auto s = store_->PutArtifact(study.id, request.artifact()); !s.ok()) return s;
  const std::string prefix =
      study.spec.has_response_prefix() ? study.spec.response_prefix() : request.response_prefix();
  if (auto s = CheckOtherScores(request.baseline()); !s.ok())
    return absl::InvalidArgumentError(absl::StrCat("prepare report: baseline: ", s.message()));
  if (auto s = Journal(study.id, journal::Prepared{num_layers, request.baseline_refusals(), prefix,
                                                   request.baseline()});
      !s.ok()) {
    return s;
  }
  study.spec.set_response_prefix(prefix);
  study.num_layers = num_layers;
  study.baseline_refusals = request.baseline_refusals();
  study.baseline = request.baseline();
  if (study.state == v1::STUDY_STATE_PREPARING) {
    study.state = v1::STUDY_STATE_RUNNING;
    StartTrials(&study, 0);
  }
  return absl::OkStatus();
}

absl::Status StudyManager::ReportTrials(const Lease& lease, const TrialsLease& work,
                                        const v1::ReportResultRequest& request) {
  Study& study = StudyOf(lease);
  // Validate everything before changing anything: one result per leased trial, sane scores.
  std::map<int64_t, const v1::TrialResult*> results;
  for (const v1::TrialResult& r : request.results()) {
    if (std::find(work.trials.begin(), work.trials.end(), r.number()) == work.trials.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("trial ", r.number(), " is not part of lease ", lease.id));
    }
    if (!results.emplace(r.number(), &r).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("trial ", r.number(), " reported twice in one report"));
    }
    const v1::TrialScores& s = r.scores();
    const absl::Status others = CheckOtherScores(s);
    if (!std::isfinite(s.kl_divergence()) || s.kl_divergence() < 0 || s.refusals() < 0 ||
        s.refusal_prompts() <= 0 || s.refusals() > s.refusal_prompts() || !others.ok()) {
      leases_.erase(lease.id);
      RequeueLease(lease, LeaseCause::kWorkerFailed, "invalid scores reported");
      changed_.SignalAll();
      return absl::InvalidArgumentError(
          absl::StrCat("trial ", r.number(), ": invalid scores (refusals ", s.refusals(), "/",
                       s.refusal_prompts(), ", KL ", s.kl_divergence(),
                       others.ok() ? "" : absl::StrCat(", ", others.message()),
                       "); the lease's trials were re-queued"));
    }
  }
  if (results.size() != work.trials.size()) {
    return absl::InvalidArgumentError(absl::StrCat("lease ", lease.id, " holds ",
                                                   work.trials.size(), " trials, the report has ",
                                                   results.size()));
  }
  for (const auto& [number, r] : results) {
    TrialEntry& t = study.trials[number];
    if (t.state == v1::TRIAL_STATE_COMPLETE)
      continue;  // journaled before a crash cut the report short
    if (auto s = Journal(study.id, journal::Completed{number, r->scores()}); !s.ok()) return s;
    t.state = v1::TRIAL_STATE_COMPLETE;
    t.scores = r->scores();
  }
  MaybeFinish(&study);
  return absl::OkStatus();
}

absl::Status StudyManager::ReportFailure(const v1::ReportFailureRequest& request) {
  MutexLock lock(&mu_);
  auto it = leases_.find(request.lease_id());
  if (it == leases_.end())
    return absl::FailedPreconditionError(
        absl::StrCat("lease ", request.lease_id(), " is not live"));
  if (it->second.worker_id != request.worker_id()) {
    return absl::PermissionDeniedError(
        absl::StrCat("lease ", request.lease_id(), " belongs to another worker"));
  }
  const Lease lease = it->second;
  leases_.erase(it);
  if (const auto* work = std::get_if<ExportLease>(&lease.work)) {
    expired_leases_.insert(lease.id);
    RequeueExport(lease, work->export_id, request.reason(), request.permanent());
  } else if (request.worker_lost()) {
    RequeueLease(lease, LeaseCause::kExpired, "worker lost: " + request.reason());
  } else {
    RequeueLease(lease, LeaseCause::kWorkerFailed, "worker reported: " + request.reason());
  }
  changed_.SignalAll();
  return absl::OkStatus();
}

}  // namespace schism::coordinator
