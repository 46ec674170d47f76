// StudyManager, part 1: studies (submit, list, get, cancel, metrics) and the helpers every part
// shares. Leasing, exports and recovery live in trial_leasing.cc, export_queue.cc and
// study_recovery.cc.
#include "coordinator/study_manager.h"

#include <algorithm>
#include <random>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/trial_parameters.h"
#include "coordinator/manager_ids.h"
#include "coordinator/pareto_front.h"

namespace schism::coordinator {

std::string RandomId(const char* prefix) {
  static std::mt19937_64 rng(std::random_device{}());
  static Mutex mu;
  MutexLock lock(&mu);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%s%016llx", prefix, static_cast<unsigned long long>(rng()));
  return buf;
}

StudyManager::StudyManager(StudyStore* store, std::function<Clock::time_point()> clock)
    : store_(store), clock_(std::move(clock)) {}

absl::Status StudyManager::Journal(const std::string& study_id, const journal::Record& record) {
  const std::string encoded = journal::EncodeRecord(record);
  absl::Status s = store_->Append(study_id, encoded);
  if (!s.ok()) {
    // The record's start names it (its type and number); a submitted spec can be 256 KiB.
    constexpr size_t kShown = 160;
    StoreRefused(absl::StrCat("study ", study_id, ": record ", encoded.substr(0, kShown),
                              encoded.size() > kShown ? "..." : ""),
                 s);
  }
  return s;
}

void StudyManager::StoreRefused(const std::string& what, const absl::Status& status) {
  ++store_errors_;
  std::fprintf(stderr, "schism coordinator: %s: the store refused it: %s\n", what.c_str(),
               std::string(status.message()).c_str());
}

void StudyManager::JournalOrLog(const std::string& study_id, const journal::Record& record) {
  Journal(study_id, record).IgnoreError();  // logged and counted by Journal
}

int64_t StudyManager::DeadlineUnixMs(Clock::time_point deadline) const {
  const auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_());
  const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::system_clock::now().time_since_epoch());
  return (now + remaining).count();
}

void StudyManager::StartTrials(Study* study, uint32_t seed_offset) {
  study->space.clear();
  for (const common::ParameterRange& p : common::HereticSearchSpace(study->num_layers)) {
    study->space.emplace_back(p.name, p.choices.empty()
                                          ? *tpe::Distribution::Float(p.low, p.high)
                                          : *tpe::Distribution::Categorical(p.choices));
  }
  tpe::TpeOptions options;
  options.n_startup_trials = study->spec.n_startup_trials();
  options.n_ei_candidates = 128;
  // A recovered study reseeds past the draws it already made (its RNG state was not saved).
  options.seed = study->spec.seed() + seed_offset;
  options.constant_liar = true;
  options.directions = {tpe::Direction::kMinimize, tpe::Direction::kMinimize};
  study->sampler = std::make_unique<tpe::TpeSampler>(options);
}

v1::Trial StudyManager::TrialProto(const Study& study, const TrialEntry& t) const {
  v1::Trial out;
  out.set_number(t.number);
  out.set_state(t.state);
  out.set_attempts(t.attempts);
  out.set_error(t.error);
  if (t.state == v1::TRIAL_STATE_COMPLETE) *out.mutable_scores() = t.scores;
  for (const auto& [name, d] : study.space) {
    auto it = t.params.find(name);
    if (it == t.params.end()) continue;
    v1::ParamValue& value = (*out.mutable_params()->mutable_values())[name];
    const tpe::ExternalValue external = tpe::ToExternal(d, it->second);
    if (const auto* s = std::get_if<std::string>(&external)) {
      value.set_categorical_value(*s);
    } else if (const auto* i = std::get_if<int64_t>(&external)) {
      value.set_int_value(*i);
    } else {
      value.set_float_value(std::get<double>(external));
    }
  }
  return out;
}

v1::StudySummary StudyManager::Summary(const Study& study) const {
  v1::StudySummary s;
  s.set_study_id(study.id);
  *s.mutable_spec() = study.spec;
  s.set_state(study.state);
  s.set_baseline_refusals(study.baseline_refusals);
  if (study.baseline.ByteSizeLong() > 0) *s.mutable_baseline() = study.baseline;
  s.set_error(study.error);
  for (const TrialEntry& t : study.trials) {
    if (t.state == v1::TRIAL_STATE_COMPLETE) s.set_completed_trials(s.completed_trials() + 1);
    if (t.state == v1::TRIAL_STATE_FAILED) s.set_failed_trials(s.failed_trials() + 1);
    if (t.state == v1::TRIAL_STATE_RUNNING) s.set_running_trials(s.running_trials() + 1);
  }
  return s;
}

absl::StatusOr<std::string> StudyManager::Submit(v1::StudySpec spec) {
  auto normalized = NormalizeStudySpec(std::move(spec));
  if (!normalized.ok()) return normalized.status();
  MutexLock lock(&mu_);
  auto study = std::make_unique<Study>();
  study->id = RandomId("s");
  study->spec = *normalized;
  study->order = next_order_++;
  if (auto s = Journal(study->id, journal::Submitted{study->spec, study->order}); !s.ok()) return s;
  const std::string id = study->id;
  studies_[id] = std::move(study);
  changed_.SignalAll();
  return id;
}

std::vector<v1::StudySummary> StudyManager::List() {
  MutexLock lock(&mu_);
  ExpireLeasesLocked();
  std::vector<const Study*> ordered;
  for (const auto& [id, s] : studies_) ordered.push_back(s.get());
  std::sort(ordered.begin(), ordered.end(),
            [](const Study* a, const Study* b) { return a->order < b->order; });
  std::vector<v1::StudySummary> out;
  for (const Study* s : ordered) out.push_back(Summary(*s));
  return out;
}

absl::StatusOr<v1::ListStudiesResponse> StudyManager::ListPage(
    const v1::ListStudiesRequest& request) {
  constexpr size_t kPageBytes = 2 << 20;
  const int page_size = request.page_size() <= 0 ? 100 : std::min(request.page_size(), 1000);
  size_t first = 0;
  if (!request.page_token().empty() && !absl::SimpleAtoi(request.page_token(), &first)) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_token \"", request.page_token(), "\" is not one this coordinator gave"));
  }
  const std::vector<v1::StudySummary> all = List();
  v1::ListStudiesResponse page;
  size_t bytes = 0, i = first;
  for (; i < all.size() && page.studies_size() < page_size; ++i) {
    bytes += all[i].ByteSizeLong();
    if (bytes > kPageBytes && page.studies_size() > 0) break;
    *page.add_studies() = all[i];
  }
  if (i < all.size()) page.set_next_page_token(std::to_string(i));
  return page;
}

absl::StatusOr<v1::StudyDetail> StudyManager::Get(const std::string& study_id) {
  MutexLock lock(&mu_);
  ExpireLeasesLocked();
  auto it = studies_.find(study_id);
  if (it == studies_.end()) return absl::NotFoundError(absl::StrCat("no study \"", study_id, "\""));
  const Study& study = *it->second;
  v1::StudyDetail detail;
  *detail.mutable_summary() = Summary(study);
  for (const TrialEntry& t : study.trials) *detail.add_trials() = TrialProto(study, t);
  for (const TrialEntry* t : Front(study)) detail.add_pareto_front(t->number);
  return detail;
}

std::vector<const StudyManager::TrialEntry*> StudyManager::Front(const Study& study) {
  std::vector<TrialScore> complete;
  for (const TrialEntry& t : study.trials) {
    if (t.state == v1::TRIAL_STATE_COMPLETE)
      complete.push_back({t.number, t.scores.refusals(), t.scores.kl_divergence()});
  }
  std::vector<const TrialEntry*> front;
  for (const TrialScore& t : ParetoFront(complete)) front.push_back(&study.trials[t.number]);
  return front;
}

absl::StatusOr<v1::StudySummary> StudyManager::Cancel(const std::string& study_id) {
  MutexLock lock(&mu_);
  auto it = studies_.find(study_id);
  if (it == studies_.end()) return absl::NotFoundError(absl::StrCat("no study \"", study_id, "\""));
  Study& study = *it->second;
  if (study.state != v1::STUDY_STATE_FINISHED && study.state != v1::STUDY_STATE_CANCELLED) {
    if (auto s = Journal(study.id, journal::Cancelled{}); !s.ok()) return s;
    study.state = v1::STUDY_STATE_CANCELLED;
  }
  changed_.SignalAll();
  return Summary(study);
}

std::string StudyManager::RegisterWorker(const v1::RegisterRequest&) {
  MutexLock lock(&mu_);
  std::string id = RandomId("w");
  workers_.insert(id);
  return id;
}

void StudyManager::WaitForChange(std::chrono::milliseconds timeout) {
  MutexLock lock(&mu_);
  changed_.WaitWithTimeout(&mu_, timeout);
}

absl::StatusOr<std::string> StudyManager::Artifact(const std::string& study_id) {
  {
    MutexLock lock(&mu_);
    if (!studies_.count(study_id))
      return absl::NotFoundError(absl::StrCat("no study \"", study_id, "\""));
  }
  return store_->GetArtifact(study_id);
}

ManagerMetrics StudyManager::Metrics() {
  MutexLock lock(&mu_);
  ExpireLeasesLocked();
  ManagerMetrics m;
  for (const auto& [id, study] : studies_) {
    m.studies[study->state]++;
    for (const TrialEntry& t : study->trials) m.trials[t.state]++;
  }
  for (const auto& [id, job] : exports_) m.exports[job.state()]++;
  m.active_leases = static_cast<int>(leases_.size());
  m.registered_workers = static_cast<int>(workers_.size());
  m.store_errors = store_errors_;
  return m;
}

}  // namespace schism::coordinator
