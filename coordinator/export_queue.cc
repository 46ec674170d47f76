// StudyManager, part 3: exports (docs/architecture.md). Requests are queued per study, leased
// only to workers with the EXPORT role, journaled whole at every change, and re-queued or failed
// like trials when their lease ends without a result.
#include <google/protobuf/util/message_differencer.h>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "coordinator/manager_ids.h"
#include "coordinator/study_manager.h"

namespace schism::coordinator {

absl::Status StudyManager::JournalExport(const v1::ExportJob& job) {
  return Journal(job.request().study_id(), journal::Export{job});
}

absl::StatusOr<v1::ExportJob> StudyManager::RequestExport(const v1::RequestExportRequest& request) {
  MutexLock lock(&mu_);
  auto study = studies_.find(request.study_id());
  if (study == studies_.end())
    return absl::NotFoundError(absl::StrCat("no study \"", request.study_id(), "\""));
  const auto& trials = study->second->trials;
  if (request.trial() < 0 || request.trial() >= static_cast<int64_t>(trials.size()) ||
      trials[request.trial()].state != v1::TRIAL_STATE_COMPLETE) {
    return absl::FailedPreconditionError(
        absl::StrCat("study ", request.study_id(), " has no completed trial ", request.trial()));
  }
  const v1::StudySpec& spec = study->second->spec;
  v1::RequestExportRequest normalized = request;
  if (normalized.format().empty())
    normalized.set_format(spec.export_format().empty() ? "merged" : spec.export_format());
  if (normalized.dtype().empty()) normalized.set_dtype(spec.export_dtype());
  if (normalized.max_shard_bytes() == 0) normalized.set_max_shard_bytes(spec.max_shard_bytes());
  if (normalized.format() != "merged" && normalized.format() != "adapter" &&
      normalized.format() != "both") {
    return absl::InvalidArgumentError(
        absl::StrCat("format \"", normalized.format(), "\": expected merged, adapter or both"));
  }
  const std::string& dtype = normalized.dtype();
  if (!dtype.empty() && dtype != "float32" && dtype != "bfloat16" && dtype != "float16") {
    return absl::InvalidArgumentError(
        absl::StrCat("dtype \"", dtype, "\": expected float32, bfloat16 or float16"));
  }
  const std::string& dest = normalized.dest();
  if (dest.empty() || dest[0] == '/' || dest == ".." || absl::StartsWith(dest, "../") ||
      absl::StrContains(dest, "/../") || absl::EndsWith(dest, "/..")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dest \"", dest, "\": must be a relative path inside the export worker's output root"));
  }
  if (normalized.source_model().empty()) normalized.set_source_model(spec.model());
  for (const std::string& id : export_order_) {
    const v1::ExportJob& existing = exports_.at(id);
    if (existing.state() != v1::EXPORT_STATE_FAILED &&
        google::protobuf::util::MessageDifferencer::Equals(existing.request(), normalized)) {
      return existing;  // idempotent repeat
    }
  }
  v1::ExportJob job;
  job.set_export_id(RandomId("x"));
  *job.mutable_request() = normalized;
  job.set_state(v1::EXPORT_STATE_QUEUED);
  if (auto s = JournalExport(job); !s.ok()) return s;
  exports_[job.export_id()] = job;
  export_order_.push_back(job.export_id());
  changed_.SignalAll();
  return job;
}

absl::StatusOr<v1::ExportJob> StudyManager::GetExport(const std::string& export_id) {
  MutexLock lock(&mu_);
  ExpireLeasesLocked();
  auto it = exports_.find(export_id);
  if (it == exports_.end())
    return absl::NotFoundError(absl::StrCat("no export \"", export_id, "\""));
  return it->second;
}

absl::StatusOr<v1::WorkItem> StudyManager::AcquireExport(const v1::AcquireWorkRequest& request) {
  v1::WorkItem item;
  for (const std::string& id : export_order_) {
    v1::ExportJob& job = exports_.at(id);
    if (job.state() != v1::EXPORT_STATE_QUEUED) continue;
    const Study& study = *studies_.at(job.request().study_id());
    job.set_state(v1::EXPORT_STATE_RUNNING);
    job.set_attempts(job.attempts() + 1);
    job.set_worker_id(request.worker_id());
    JournalExport(job).IgnoreError();  // logged and counted by Journal
    Lease lease;
    lease.id = RandomId("l");
    lease.study_id = study.id;
    lease.worker_id = request.worker_id();
    lease.work = ExportLease{id};
    lease.deadline = clock_() + std::chrono::seconds(study.spec.lease_seconds());
    item.set_lease_id(lease.id);
    item.set_study_id(study.id);
    *item.mutable_spec() = study.spec;
    item.set_lease_deadline_unix_ms(DeadlineUnixMs(lease.deadline));
    v1::ExportWork* work = item.mutable_export_trial();
    *work->mutable_job() = job;
    *work->mutable_trial() = TrialProto(study, study.trials.at(job.request().trial()));
    work->set_baseline_refusals(study.baseline_refusals);
    if (study.baseline.ByteSizeLong() > 0) *work->mutable_baseline() = study.baseline;
    leases_[lease.id] = std::move(lease);
    return item;
  }
  return item;
}

absl::Status StudyManager::ReportExport(const ExportLease& work,
                                        const v1::ReportResultRequest& request) {
  if (request.export_destination().empty() || request.export_files().empty()) {
    return absl::InvalidArgumentError("export report without a destination or files");
  }
  v1::ExportJob job = exports_.at(work.export_id);
  job.set_state(v1::EXPORT_STATE_DONE);
  job.set_destination(request.export_destination());
  *job.mutable_files() = request.export_files();
  job.clear_error();
  if (auto s = JournalExport(job); !s.ok()) return s;
  exports_[job.export_id()] = job;
  return absl::OkStatus();
}

void StudyManager::RequeueExport(const Lease& lease, const std::string& export_id,
                                 const std::string& reason, bool permanent) {
  v1::ExportJob& job = exports_.at(export_id);
  if (job.state() != v1::EXPORT_STATE_RUNNING) return;
  const Study& study = StudyOf(lease);
  if (permanent || job.attempts() >= study.spec.max_attempts()) {
    job.set_state(v1::EXPORT_STATE_FAILED);
    job.set_error(permanent ? reason
                            : absl::StrCat("failed ", job.attempts(), " times; last: ", reason));
  } else {
    job.set_state(v1::EXPORT_STATE_QUEUED);
    job.set_error(reason);
  }
  JournalExport(job).IgnoreError();  // logged and counted by Journal
}

}  // namespace schism::coordinator
