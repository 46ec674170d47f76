#include "coordinator/study_manager.h"

#include <cmath>
#include <random>

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/env.h"
#include "coordinator/objectives.h"
#include "coordinator/pareto_front.h"

namespace schism::coordinator {
namespace {

using Json = nlohmann::json;

std::string RandomId(const char* prefix) {
  static std::mt19937_64 rng(std::random_device{}());
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%s%016llx", prefix, static_cast<unsigned long long>(rng()));
  return buf;
}

void DefaultPromptSet(v1::PromptSet* set, const char* file, const char* split) {
  if (set->path().empty()) set->set_path(common::DefaultDataDir() + "/" + file);
  if (set->split().empty() && split != nullptr) set->set_split(split);
}

// Heretic's search space for a model with `num_layers` decoder layers (DESIGN.md §2).
tpe::SearchSpace HereticSearchSpace(int num_layers) {
  const double L = num_layers - 1;
  tpe::SearchSpace s;
  s.emplace_back("direction_scope", *tpe::Distribution::Categorical({"global", "per layer"}));
  s.emplace_back("direction_index", *tpe::Distribution::Float(0.4 * L, 0.9 * L));
  for (std::string c : {"attn.o_proj", "mlp.down_proj"}) {
    s.emplace_back(c + ".max_weight", *tpe::Distribution::Float(c == "mlp.down_proj" ? -0.25 : 0.8, 1.5));
    s.emplace_back(c + ".max_weight_position", *tpe::Distribution::Float(0.6 * L, L));
    s.emplace_back(c + ".min_weight", *tpe::Distribution::Float(0.0, 1.0));
    s.emplace_back(c + ".min_weight_distance", *tpe::Distribution::Float(1.0, std::max(0.6 * L, 1.0)));
  }
  return s;
}

}  // namespace

absl::StatusOr<v1::StudySpec> NormalizeStudySpec(v1::StudySpec spec) {
  auto bad = [](const std::string& field, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("study spec: ", field, ": ", why));
  };
  if (spec.model().empty()) return bad("model", "is required");
  if (spec.quantization().empty()) spec.set_quantization("none");
  if (spec.quantization() == "bnb_4bit") spec.set_quantization("nf4");
  if (spec.quantization() != "none" && spec.quantization() != "nf4") {
    return bad("quantization", "expected none, nf4 or bnb_4bit, got \"" + spec.quantization() + "\"");
  }
  if (spec.n_trials() == 0) spec.set_n_trials(200);
  // A study detail carries every trial (~250 bytes each); 100,000 stay well inside a 64 MiB reply.
  if (spec.n_trials() < 1 || spec.n_trials() > 100000) return bad("n_trials", "must be in [1, 100000]");
  if (spec.n_startup_trials() == 0) spec.set_n_startup_trials(60);
  if (spec.n_startup_trials() < 0) return bad("n_startup_trials", "must be >= 0");
  if (spec.max_response_length() == 0) spec.set_max_response_length(100);
  if (spec.max_response_length() < 1 || spec.max_response_length() > 4096) {
    return bad("max_response_length", "must be in [1, 4096]");
  }
  if (spec.system_prompt().empty()) spec.set_system_prompt("You are a helpful assistant.");
  if (spec.row_normalization().empty()) spec.set_row_normalization("full");
  if (spec.row_normalization() != "none" && spec.row_normalization() != "pre" &&
      spec.row_normalization() != "full") {
    return bad("row_normalization", "expected none, pre or full, got \"" + spec.row_normalization() + "\"");
  }
  DefaultPromptSet(spec.mutable_good_prompts(), "harmless_train.txt", "[:400]");
  DefaultPromptSet(spec.mutable_bad_prompts(), "harmful_train.txt", "[:400]");
  DefaultPromptSet(spec.mutable_refusal_prompts(), "harmful_test.txt", "[:100]");
  DefaultPromptSet(spec.mutable_kl_prompts(), "harmless_test.txt", "[:100]");
  if (spec.trials_per_lease() == 0) spec.set_trials_per_lease(1);
  if (spec.trials_per_lease() < 1 || spec.trials_per_lease() > 64) return bad("trials_per_lease", "must be in [1, 64]");
  if (spec.lease_seconds() == 0) spec.set_lease_seconds(60);
  if (spec.lease_seconds() < 1) return bad("lease_seconds", "must be >= 1");
  if (spec.max_attempts() == 0) spec.set_max_attempts(3);
  if (spec.max_attempts() < 1) return bad("max_attempts", "must be >= 1");
  if (spec.max_failed_trials() < 0) return bad("max_failed_trials", "must be >= 0 (0: max(3, n_trials / 10))");
  if (!spec.study_checkpoint_dir().empty()) {
    return bad("study_checkpoint_dir", "applies to `schism run` only; a coordinator keeps studies in its --store");
  }
  if (spec.objective().empty()) {
    spec.set_objective(spec.has_kl_divergence_scale() || spec.has_kl_divergence_target() ? "heretic-1.4" : "raw");
  }
  if (spec.objective() != "raw" && spec.objective() != "heretic-1.4") {
    return bad("objective", "expected raw or heretic-1.4, got \"" + spec.objective() + "\"");
  }
  if (spec.objective() == "raw" && (spec.has_kl_divergence_scale() || spec.has_kl_divergence_target())) {
    return bad("kl_divergence_scale", "kl_divergence_scale and kl_divergence_target shape the heretic-1.4 objective; "
                                      "objective = \"raw\" minimizes raw refusals and KL");
  }
  if (spec.objective() == "heretic-1.4") {
    if (!spec.has_kl_divergence_scale()) spec.set_kl_divergence_scale(1.0);
    if (!spec.has_kl_divergence_target()) spec.set_kl_divergence_target(0.01);
    if (!(spec.kl_divergence_scale() > 0)) return bad("kl_divergence_scale", "must be positive");
    if (!(spec.kl_divergence_target() >= 0)) return bad("kl_divergence_target", "must be >= 0");
  }
  if (spec.has_winsorization_quantile() &&
      !(spec.winsorization_quantile() >= 0 && spec.winsorization_quantile() <= 1)) {
    return bad("winsorization_quantile", "must be in [0, 1]");
  }
  for (const std::string& marker : spec.refusal_markers()) {
    if (marker.empty()) return bad("refusal_markers", "markers must not be empty (an empty marker matches everything)");
  }
  for (const std::string& d : spec.dtypes()) {
    if (d != "auto" && d != "float32" && d != "bfloat16" && d != "float16") {
      return bad("dtypes", "\"" + d + "\": expected auto, float32, bfloat16 or float16");
    }
  }
  if (spec.ByteSizeLong() > kMaxStudySpecBytes) {
    return bad("spec", absl::StrCat(spec.ByteSizeLong(), " bytes, more than ", kMaxStudySpecBytes,
                                    ": long texts (system prompt, markers, prefix) must stay small"));
  }
  if (spec.batch_size() == 0) spec.set_batch_size(32);
  if (spec.batch_size() < 1) return bad("batch_size", "must be >= 1");
  return spec;
}

StudyManager::StudyManager(StudyStore* store, std::function<Clock::time_point()> clock)
    : store_(store), clock_(std::move(clock)) {}

absl::Status StudyManager::Journal(const std::string& study_id, const std::string& record) {
  return store_->Append(study_id, record);
}

int64_t StudyManager::DeadlineUnixMs(Clock::time_point deadline) const {
  const auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_());
  const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::system_clock::now().time_since_epoch());
  return (now + remaining).count();
}

void StudyManager::StartTrials(Study* study, uint32_t seed_offset) {
  study->space = HereticSearchSpace(study->num_layers);
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
  s.set_error(study.error);
  for (const TrialEntry& t : study.trials) {
    if (t.state == v1::TRIAL_STATE_COMPLETE) s.set_completed_trials(s.completed_trials() + 1);
    if (t.state == v1::TRIAL_STATE_FAILED) s.set_failed_trials(s.failed_trials() + 1);
    if (t.state == v1::TRIAL_STATE_RUNNING) s.set_running_trials(s.running_trials() + 1);
  }
  return s;
}

absl::Status StudyManager::Recover() {
  auto all = store_->ReplayAll();
  if (!all.ok()) return all.status();
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [id, records] : *all) {
    // A record that parses as JSON but lacks a field or has the wrong type (a hand-edited or
    // foreign journal) is data loss in that study, reported by name, not an exception.
    try {
      if (auto s = RecoverStudy(id, records); !s.ok()) return s;
    } catch (const std::exception& e) {
      return absl::DataLossError(absl::StrCat("study ", id, ": malformed journal record: ", e.what()));
    }
  }
  return absl::OkStatus();
}

absl::Status StudyManager::RecoverStudy(const std::string& id, const std::vector<std::string>& records) {
  auto study = std::make_unique<Study>();
  study->id = id;
  std::map<int64_t, std::pair<std::string, std::string>> held;  // trial -> (lease, worker) still out
  std::map<std::string, std::vector<int64_t>> lease_trials;      // every trial a lease held
  for (const std::string& text : records) {
    Json r = Json::parse(text, nullptr, false);
    if (r.is_discarded() || !r.contains("type")) {
      return absl::DataLossError(absl::StrCat("study ", id, ": unreadable journal record"));
    }
    const std::string type = r["type"];
    if (type == "submitted") {
      auto s = google::protobuf::util::JsonStringToMessage(r["spec"].get<std::string>(), &study->spec);
      if (!s.ok()) return absl::DataLossError(absl::StrCat("study ", id, ": bad spec record"));
      study->order = r.value("order", int64_t{0});
      next_order_ = std::max(next_order_, study->order + 1);
    } else if (type == "prepared") {
      study->num_layers = r["num_layers"];
      study->spec.set_response_prefix(r.value("response_prefix", study->spec.response_prefix()));
      study->baseline_refusals = r["baseline_refusals"];
      study->state = v1::STUDY_STATE_RUNNING;
      StartTrials(study.get(), 0);
    } else if (type == "prepare_failed") {
      study->state = v1::STUDY_STATE_FAILED;
      study->error = r.value("reason", "");
    } else if (type == "asked") {
      TrialEntry t;
      t.number = r["number"];
      for (auto it = r["params"].begin(); it != r["params"].end(); ++it) t.params[it.key()] = it.value();
      study->trials.push_back(std::move(t));
    } else if (type == "leased") {
      TrialEntry& t = study->trials.at(r["number"].get<int64_t>());
      t.attempts = r["attempt"];
      held[t.number] = {r.value("lease", ""), r.value("worker", "")};
      lease_trials[r.value("lease", "")].push_back(t.number);
    } else if (type == "completed") {
      TrialEntry& t = study->trials.at(r["number"].get<int64_t>());
      held.erase(t.number);
      t.state = v1::TRIAL_STATE_COMPLETE;
      t.scores.set_refusals(r["refusals"]);
      t.scores.set_refusal_prompts(r["refusal_prompts"]);
      t.scores.set_kl_divergence(r["kl_divergence"]);
    } else if (type == "requeued" || type == "failed") {
      TrialEntry& t = study->trials.at(r["number"].get<int64_t>());
      held.erase(t.number);
      // Records before the cause was journaled read as expiries (of an unknown worker each).
      const std::string cause = r.value("cause", "expired");
      const std::string worker = r.value("worker", absl::StrCat("unrecorded-", t.attempts));
      if (cause == "expired") t.lost_workers.insert(worker);
      if (cause == "worker_failed") t.failed_workers.insert(worker);
      t.state = type == "failed" ? v1::TRIAL_STATE_FAILED : v1::TRIAL_STATE_WAITING;
      if (type == "failed") t.error = r.value("error", r.value("reason", ""));
    } else if (type == "study_failed") {
      study->state = v1::STUDY_STATE_FAILED;
      study->error = r.value("reason", "");
    } else if (type == "finished") {
      study->state = v1::STUDY_STATE_FINISHED;
    } else if (type == "cancelled") {
      study->state = v1::STUDY_STATE_CANCELLED;
    } else if (type == "export") {
      v1::ExportJob job;
      if (!google::protobuf::util::JsonStringToMessage(r["job"].get<std::string>(), &job).ok()) {
        return absl::DataLossError(absl::StrCat("study ", id, ": bad export record"));
      }
      // Its lease died with the old coordinator.
      if (job.state() == v1::EXPORT_STATE_RUNNING) job.set_state(v1::EXPORT_STATE_QUEUED);
      if (!exports_.count(job.export_id())) export_order_.push_back(job.export_id());
      exports_[job.export_id()] = job;
    }
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
      lease.trials = lease_trials[holder.first];
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

absl::StatusOr<std::string> StudyManager::Submit(v1::StudySpec spec) {
  auto normalized = NormalizeStudySpec(std::move(spec));
  if (!normalized.ok()) return normalized.status();
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(*normalized, &json, options).ok()) {
    return absl::InternalError("cannot serialize study spec");
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto study = std::make_unique<Study>();
  study->id = RandomId("s");
  study->spec = *normalized;
  study->order = next_order_++;
  if (auto s = Journal(study->id, Json{{"type", "submitted"}, {"spec", json}, {"order", study->order}}.dump());
      !s.ok()) {
    return s;
  }
  const std::string id = study->id;
  studies_[id] = std::move(study);
  changed_.notify_all();
  return id;
}

std::vector<v1::StudySummary> StudyManager::List() {
  std::lock_guard<std::mutex> lock(mu_);
  ExpireLeasesLocked();
  std::vector<const Study*> ordered;
  for (const auto& [id, s] : studies_) ordered.push_back(s.get());
  std::sort(ordered.begin(), ordered.end(), [](const Study* a, const Study* b) { return a->order < b->order; });
  std::vector<v1::StudySummary> out;
  for (const Study* s : ordered) out.push_back(Summary(*s));
  return out;
}

absl::StatusOr<v1::ListStudiesResponse> StudyManager::ListPage(const v1::ListStudiesRequest& request) {
  constexpr size_t kPageBytes = 2 << 20;
  const int page_size = request.page_size() <= 0 ? 100 : std::min(request.page_size(), 1000);
  size_t first = 0;
  if (!request.page_token().empty() && !absl::SimpleAtoi(request.page_token(), &first)) {
    return absl::InvalidArgumentError(absl::StrCat("page_token \"", request.page_token(), "\" is not one this coordinator gave"));
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
  std::lock_guard<std::mutex> lock(mu_);
  ExpireLeasesLocked();
  auto it = studies_.find(study_id);
  if (it == studies_.end()) return absl::NotFoundError(absl::StrCat("no study \"", study_id, "\""));
  const Study& study = *it->second;
  v1::StudyDetail detail;
  *detail.mutable_summary() = Summary(study);
  std::vector<TrialScore> complete;
  for (const TrialEntry& t : study.trials) {
    *detail.add_trials() = TrialProto(study, t);
    if (t.state == v1::TRIAL_STATE_COMPLETE) {
      complete.push_back({t.number, t.scores.refusals(), t.scores.kl_divergence()});
    }
  }
  for (const TrialScore& t : ParetoFront(complete)) detail.add_pareto_front(t.number);
  return detail;
}

absl::StatusOr<v1::StudySummary> StudyManager::Cancel(const std::string& study_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = studies_.find(study_id);
  if (it == studies_.end()) return absl::NotFoundError(absl::StrCat("no study \"", study_id, "\""));
  Study& study = *it->second;
  if (study.state != v1::STUDY_STATE_FINISHED && study.state != v1::STUDY_STATE_CANCELLED) {
    if (auto s = Journal(study.id, Json{{"type", "cancelled"}}.dump()); !s.ok()) return s;
    study.state = v1::STUDY_STATE_CANCELLED;
  }
  changed_.notify_all();
  return Summary(study);
}

std::string StudyManager::RegisterWorker(const v1::RegisterRequest&) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string id = RandomId("w");
  workers_.insert(id);
  return id;
}

std::optional<int64_t> StudyManager::AskTrial(Study* study) {
  // FAILED trials do not count: each is replaced by a new ask (MaybeFinish caps how many).
  int live = 0;
  for (const TrialEntry& t : study->trials) live += t.state != v1::TRIAL_STATE_FAILED;
  if (live >= study->spec.n_trials()) return std::nullopt;
  std::vector<tpe::TrialRecord> records;
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
  TrialEntry t;
  t.number = static_cast<int64_t>(study->trials.size());
  t.params = study->sampler->SampleTrial(records, t.number, study->space);
  Json params = Json::object();
  for (const auto& [name, value] : t.params) params[name] = value;
  if (auto s = Journal(study->id, Json{{"type", "asked"}, {"number", t.number}, {"params", params}}.dump()); !s.ok()) {
    StoreRefused(absl::StrCat("study ", study->id, ": trial ", t.number, " not asked"), s);
    return std::nullopt;
  }
  study->trials.push_back(std::move(t));
  return study->trials.back().number;
}

absl::StatusOr<v1::WorkItem> StudyManager::Acquire(const v1::AcquireWorkRequest& request) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!workers_.count(request.worker_id())) {
    return absl::FailedPreconditionError(absl::StrCat("unknown worker \"", request.worker_id(), "\"; register first"));
  }
  ExpireLeasesLocked();
  if (request.role() == v1::WORKER_ROLE_EXPORT) return AcquireExport(request);
  const int capacity = std::clamp(request.capacity(), 1, 64);
  std::vector<Study*> order;
  for (auto& [id, s] : studies_) order.push_back(s.get());
  // Highest priority first, then the worker's loaded model (affinity), then submission order.
  std::sort(order.begin(), order.end(), [&](const Study* a, const Study* b) {
    if (a->spec.priority() != b->spec.priority()) return a->spec.priority() > b->spec.priority();
    const bool a_loaded = a->spec.model() == request.loaded_model();
    const bool b_loaded = b->spec.model() == request.loaded_model();
    if (a_loaded != b_loaded) return a_loaded;
    return a->order < b->order;
  });
  v1::WorkItem item;
  for (Study* study : order) {
    Lease lease;
    lease.study_id = study->id;
    lease.worker_id = request.worker_id();
    lease.deadline = clock_() + std::chrono::seconds(study->spec.lease_seconds());
    if (study->state == v1::STUDY_STATE_QUEUED) {
      lease.prepare = true;
      study->state = v1::STUDY_STATE_PREPARING;
      ++study->prepare_attempts;
      item.mutable_prepare();
    } else if (study->state == v1::STUDY_STATE_RUNNING) {
      // Waiting trials this worker has not failed or lost first, then new asks; a trial it
      // failed before only when there is nothing else (one broken worker must not burn
      // through a trial's attempts alone, nor a lone worker starve).
      const std::string& worker = request.worker_id();
      auto tried_here = [&](const TrialEntry& t) { return t.failed_workers.count(worker) || t.lost_workers.count(worker); };
      for (TrialEntry& t : study->trials) {
        if (static_cast<int>(lease.trials.size()) < capacity && t.state == v1::TRIAL_STATE_WAITING && !tried_here(t)) {
          lease.trials.push_back(t.number);
        }
      }
      while (static_cast<int>(lease.trials.size()) < std::min(capacity, study->spec.trials_per_lease())) {
        auto number = AskTrial(study);
        if (!number) break;
        lease.trials.push_back(*number);
      }
      if (lease.trials.empty()) {
        for (TrialEntry& t : study->trials) {
          if (static_cast<int>(lease.trials.size()) < capacity && t.state == v1::TRIAL_STATE_WAITING) {
            lease.trials.push_back(t.number);
          }
        }
      }
      if (lease.trials.empty()) continue;
      lease.id = RandomId("l");
      for (int64_t number : lease.trials) {
        TrialEntry& t = study->trials[number];
        t.state = v1::TRIAL_STATE_RUNNING;
        ++t.attempts;
        JournalOrLog(study->id, Json{{"type", "leased"}, {"number", number}, {"attempt", t.attempts},
                                     {"worker", request.worker_id()}, {"lease", lease.id}}.dump());
        *item.mutable_evaluate()->add_trials() = TrialProto(*study, t);
      }
    } else {
      continue;
    }
    if (lease.id.empty()) lease.id = RandomId("l");
    item.set_lease_id(lease.id);
    item.set_study_id(study->id);
    *item.mutable_spec() = study->spec;
    item.set_lease_deadline_unix_ms(DeadlineUnixMs(lease.deadline));
    leases_[lease.id] = std::move(lease);
    return item;
  }
  return item;
}

void StudyManager::WaitForChange(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  changed_.wait_for(lock, timeout);
}

absl::StatusOr<int64_t> StudyManager::Heartbeat(const std::string& worker_id, const std::string& lease_id) {
  std::lock_guard<std::mutex> lock(mu_);
  ExpireLeasesLocked();
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) {
    return absl::FailedPreconditionError(absl::StrCat("lease ", lease_id, expired_leases_.count(lease_id)
                                                                              ? " expired; its work was re-queued"
                                                                              : " is unknown"));
  }
  if (it->second.worker_id != worker_id) {
    return absl::PermissionDeniedError(absl::StrCat("lease ", lease_id, " belongs to another worker"));
  }
  Study& study = *studies_.at(it->second.study_id);
  it->second.deadline = clock_() + std::chrono::seconds(study.spec.lease_seconds());
  it->second.restored_unheard = false;
  return DeadlineUnixMs(it->second.deadline);
}

void StudyManager::StoreRefused(const std::string& what, const absl::Status& status) {
  ++store_errors_;
  std::fprintf(stderr, "schism coordinator: %s: the store refused it: %s\n", what.c_str(),
               std::string(status.message()).c_str());
}

void StudyManager::JournalOrLog(const std::string& study_id, const std::string& record) {
  if (auto s = Journal(study_id, record); !s.ok()) StoreRefused(absl::StrCat("study ", study_id, ": record ", record), s);
}

int StudyManager::MaxFailedTrials(const v1::StudySpec& spec) {
  return spec.max_failed_trials() > 0 ? spec.max_failed_trials() : std::max(3, spec.n_trials() / 10);
}

void StudyManager::RequeueLease(const Lease& lease, LeaseEnd end, const std::string& reason) {
  Study& study = *studies_.at(lease.study_id);
  expired_leases_.insert(lease.id);
  if (!lease.export_id.empty()) {
    RequeueExport(lease, reason, /*permanent=*/false);
    return;
  }
  if (lease.prepare) {
    if (study.prepare_attempts >= study.spec.max_attempts()) {
      study.state = v1::STUDY_STATE_FAILED;
      study.error = "prepare failed " + std::to_string(study.prepare_attempts) + " times: " + reason;
      JournalOrLog(study.id, Json{{"type", "prepare_failed"}, {"reason", study.error}}.dump());
    } else if (study.state == v1::STUDY_STATE_PREPARING) {
      study.state = v1::STUDY_STATE_QUEUED;
    }
    return;
  }
  const char* cause = end == LeaseEnd::kExpired ? "expired" : end == LeaseEnd::kWorkerFailed ? "worker_failed" : "restart";
  for (int64_t number : lease.trials) {
    TrialEntry& t = study.trials[number];
    if (t.state != v1::TRIAL_STATE_RUNNING) continue;
    if (end == LeaseEnd::kExpired) t.lost_workers.insert(lease.worker_id);
    if (end == LeaseEnd::kWorkerFailed) t.failed_workers.insert(lease.worker_id);
    const int max = study.spec.max_attempts();
    std::string error;
    if (static_cast<int>(t.lost_workers.size()) >= max) {
      error = absl::StrCat("outlived ", t.lost_workers.size(), " workers whose leases expired");
    } else if (static_cast<int>(t.failed_workers.size()) >= max) {
      error = absl::StrCat(t.failed_workers.size(), " workers reported a failure");
    } else if (t.attempts >= 3 * max) {
      error = absl::StrCat("leased ", t.attempts, " times without a result");
    }
    Json record{{"number", number}, {"reason", reason}, {"worker", lease.worker_id}, {"cause", cause}};
    if (!error.empty()) {
      t.state = v1::TRIAL_STATE_FAILED;
      t.error = absl::StrCat(error, "; last: ", reason);
      record["type"] = "failed";
      record["error"] = t.error;
    } else {
      t.state = v1::TRIAL_STATE_WAITING;
      record["type"] = "requeued";
    }
    JournalOrLog(study.id, record.dump());
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
    study->error = absl::StrCat(failed, " trials failed, more than max_failed_trials = ", MaxFailedTrials(study->spec),
                                "; last: ", last_error);
    JournalOrLog(study->id, Json{{"type", "study_failed"}, {"reason", study->error}}.dump());
    return;
  }
  if (completed < study->spec.n_trials() || open > 0) return;
  study->state = v1::STUDY_STATE_FINISHED;
  JournalOrLog(study->id, Json{{"type", "finished"}}.dump());
}

void StudyManager::ExpireLeases() {
  std::lock_guard<std::mutex> lock(mu_);
  ExpireLeasesLocked();
}

void StudyManager::ReleaseRestoredLeases() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = leases_.begin(); it != leases_.end();) {
    if (it->second.restored_unheard) {
      RequeueLease(it->second, LeaseEnd::kRestart, "its worker stopped with the coordinator");
      it = leases_.erase(it);
    } else {
      ++it;
    }
  }
  changed_.notify_all();
}

void StudyManager::ExpireLeasesLocked() {
  const auto now = clock_();
  bool any = false;
  for (auto it = leases_.begin(); it != leases_.end();) {
    if (it->second.deadline <= now) {
      if (it->second.restored_unheard) {
        RequeueLease(it->second, LeaseEnd::kRestart, "lease restored after a coordinator restart expired unheard");
      } else {
        RequeueLease(it->second, LeaseEnd::kExpired, "lease expired");
      }
      it = leases_.erase(it);
      any = true;
    } else {
      ++it;
    }
  }
  if (any) changed_.notify_all();
}

absl::Status StudyManager::Report(const v1::ReportResultRequest& request) {
  std::lock_guard<std::mutex> lock(mu_);
  ExpireLeasesLocked();
  if (finished_leases_.count(request.lease_id())) return absl::OkStatus();  // idempotent repeat
  auto it = leases_.find(request.lease_id());
  if (it == leases_.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("lease ", request.lease_id(),
                     expired_leases_.count(request.lease_id()) ? " expired before this report; its work was re-queued"
                                                               : " is unknown"));
  }
  const Lease lease = it->second;
  if (lease.worker_id != request.worker_id()) {
    return absl::PermissionDeniedError(absl::StrCat("lease ", lease.id, " belongs to another worker"));
  }
  Study& study = *studies_.at(lease.study_id);
  if (!lease.export_id.empty()) {
    if (request.export_destination().empty() || request.export_files().empty()) {
      return absl::InvalidArgumentError("export report without a destination or files");
    }
    v1::ExportJob job = exports_.at(lease.export_id);
    job.set_state(v1::EXPORT_STATE_DONE);
    job.set_destination(request.export_destination());
    *job.mutable_files() = request.export_files();
    job.clear_error();
    if (auto s = JournalExport(job); !s.ok()) return s;
    exports_[job.export_id()] = job;
  } else if (lease.prepare) {
    if (request.artifact().empty()) return absl::InvalidArgumentError("prepare report without an artifact");
    const int num_layers = request.num_layers();
    if (num_layers < 1 || num_layers > 1024) {
      return absl::InvalidArgumentError(absl::StrCat("prepare report: num_layers ", request.num_layers(), " is out of range"));
    }
    if (auto s = store_->PutArtifact(study.id, request.artifact()); !s.ok()) return s;
    const std::string prefix = study.spec.response_prefix().empty() ? request.response_prefix()
                                                                     : study.spec.response_prefix();
    if (auto s = Journal(study.id, Json{{"type", "prepared"}, {"num_layers", num_layers},
                                        {"baseline_refusals", request.baseline_refusals()},
                                        {"response_prefix", prefix}}.dump());
        !s.ok()) {
      return s;
    }
    study.spec.set_response_prefix(prefix);
    study.num_layers = num_layers;
    study.baseline_refusals = request.baseline_refusals();
    if (study.state == v1::STUDY_STATE_PREPARING) {
      study.state = v1::STUDY_STATE_RUNNING;
      StartTrials(&study, 0);
    }
  } else {
    // Validate everything before changing anything: one result per leased trial, sane scores.
    std::map<int64_t, const v1::TrialResult*> results;
    for (const v1::TrialResult& r : request.results()) {
      if (std::find(lease.trials.begin(), lease.trials.end(), r.number()) == lease.trials.end()) {
        return absl::InvalidArgumentError(absl::StrCat("trial ", r.number(), " is not part of lease ", lease.id));
      }
      if (!results.emplace(r.number(), &r).second) {
        return absl::InvalidArgumentError(absl::StrCat("trial ", r.number(), " reported twice in one report"));
      }
      const v1::TrialScores& s = r.scores();
      if (!std::isfinite(s.kl_divergence()) || s.kl_divergence() < 0 || s.refusals() < 0 ||
          s.refusal_prompts() <= 0 || s.refusals() > s.refusal_prompts()) {
        leases_.erase(lease.id);
        RequeueLease(lease, LeaseEnd::kWorkerFailed, "invalid scores reported");
        changed_.notify_all();
        return absl::InvalidArgumentError(absl::StrCat("trial ", r.number(), ": invalid scores (refusals ",
                                                       s.refusals(), "/", s.refusal_prompts(), ", KL ",
                                                       s.kl_divergence(), "); the lease's trials were re-queued"));
      }
    }
    if (results.size() != lease.trials.size()) {
      return absl::InvalidArgumentError(absl::StrCat("lease ", lease.id, " holds ", lease.trials.size(),
                                                     " trials, the report has ", results.size()));
    }
    for (const auto& [number, r] : results) {
      TrialEntry& t = study.trials[number];
      if (t.state == v1::TRIAL_STATE_COMPLETE) continue;  // journaled before a crash cut the report short
      const v1::TrialScores& s = r->scores();
      if (auto st = Journal(study.id, Json{{"type", "completed"}, {"number", number}, {"refusals", s.refusals()},
                                           {"refusal_prompts", s.refusal_prompts()},
                                           {"kl_divergence", s.kl_divergence()}}.dump());
          !st.ok()) {
        return st;
      }
      t.state = v1::TRIAL_STATE_COMPLETE;
      t.scores = s;
    }
    MaybeFinish(&study);
  }
  leases_.erase(lease.id);
  finished_leases_.insert(lease.id);
  changed_.notify_all();
  return absl::OkStatus();
}

absl::Status StudyManager::ReportFailure(const v1::ReportFailureRequest& request) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = leases_.find(request.lease_id());
  if (it == leases_.end()) return absl::FailedPreconditionError(absl::StrCat("lease ", request.lease_id(), " is not live"));
  if (it->second.worker_id != request.worker_id()) {
    return absl::PermissionDeniedError(absl::StrCat("lease ", request.lease_id(), " belongs to another worker"));
  }
  const Lease lease = it->second;
  leases_.erase(it);
  if (!lease.export_id.empty()) {
    expired_leases_.insert(lease.id);
    RequeueExport(lease, request.reason(), request.permanent());
    changed_.notify_all();
    return absl::OkStatus();
  }
  RequeueLease(lease, LeaseEnd::kWorkerFailed, "worker reported: " + request.reason());
  changed_.notify_all();
  return absl::OkStatus();
}

absl::StatusOr<std::string> StudyManager::Artifact(const std::string& study_id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!studies_.count(study_id)) return absl::NotFoundError(absl::StrCat("no study \"", study_id, "\""));
  }
  return store_->GetArtifact(study_id);
}

absl::Status StudyManager::JournalExport(const v1::ExportJob& job) {
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(job, &json).ok()) {
    return absl::InternalError("export job does not serialize");
  }
  return Journal(job.request().study_id(), Json{{"type", "export"}, {"job", json}}.dump());
}

absl::StatusOr<v1::ExportJob> StudyManager::RequestExport(const v1::RequestExportRequest& request) {
  std::lock_guard<std::mutex> lock(mu_);
  auto study = studies_.find(request.study_id());
  if (study == studies_.end()) return absl::NotFoundError(absl::StrCat("no study \"", request.study_id(), "\""));
  const auto& trials = study->second->trials;
  if (request.trial() < 0 || request.trial() >= static_cast<int64_t>(trials.size()) ||
      trials[request.trial()].state != v1::TRIAL_STATE_COMPLETE) {
    return absl::FailedPreconditionError(
        absl::StrCat("study ", request.study_id(), " has no completed trial ", request.trial()));
  }
  const v1::StudySpec& spec = study->second->spec;
  v1::RequestExportRequest normalized = request;
  if (normalized.format().empty()) normalized.set_format(spec.export_format().empty() ? "merged" : spec.export_format());
  if (normalized.dtype().empty()) normalized.set_dtype(spec.export_dtype());
  if (normalized.max_shard_bytes() == 0) normalized.set_max_shard_bytes(spec.max_shard_bytes());
  if (normalized.format() != "merged" && normalized.format() != "adapter" && normalized.format() != "both") {
    return absl::InvalidArgumentError(
        absl::StrCat("format \"", normalized.format(), "\": expected merged, adapter or both"));
  }
  const std::string& dtype = normalized.dtype();
  if (!dtype.empty() && dtype != "float32" && dtype != "bfloat16" && dtype != "float16") {
    return absl::InvalidArgumentError(absl::StrCat("dtype \"", dtype, "\": expected float32, bfloat16 or float16"));
  }
  const std::string& dest = normalized.dest();
  if (dest.empty() || dest[0] == '/' || dest == ".." || absl::StartsWith(dest, "../") ||
      absl::StrContains(dest, "/../") || absl::EndsWith(dest, "/..")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dest \"", dest, "\": must be a relative path inside the export worker's output root"));
  }
  if (normalized.source_model().empty()) normalized.set_source_model(study->second->spec.model());
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
  changed_.notify_all();
  return job;
}

absl::StatusOr<v1::ExportJob> StudyManager::GetExport(const std::string& export_id) {
  std::lock_guard<std::mutex> lock(mu_);
  ExpireLeasesLocked();
  auto it = exports_.find(export_id);
  if (it == exports_.end()) return absl::NotFoundError(absl::StrCat("no export \"", export_id, "\""));
  return it->second;
}

ManagerMetrics StudyManager::Metrics() {
  std::lock_guard<std::mutex> lock(mu_);
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

absl::StatusOr<v1::WorkItem> StudyManager::AcquireExport(const v1::AcquireWorkRequest& request) {
  v1::WorkItem item;
  for (const std::string& id : export_order_) {
    v1::ExportJob& job = exports_.at(id);
    if (job.state() != v1::EXPORT_STATE_QUEUED) continue;
    const Study& study = *studies_.at(job.request().study_id());
    job.set_state(v1::EXPORT_STATE_RUNNING);
    job.set_attempts(job.attempts() + 1);
    job.set_worker_id(request.worker_id());
    if (auto s = JournalExport(job); !s.ok()) StoreRefused("export " + id, s);
    Lease lease;
    lease.id = RandomId("l");
    lease.study_id = study.id;
    lease.worker_id = request.worker_id();
    lease.export_id = id;
    lease.deadline = clock_() + std::chrono::seconds(study.spec.lease_seconds());
    item.set_lease_id(lease.id);
    item.set_study_id(study.id);
    *item.mutable_spec() = study.spec;
    item.set_lease_deadline_unix_ms(DeadlineUnixMs(lease.deadline));
    v1::ExportWork* work = item.mutable_export_trial();
    *work->mutable_job() = job;
    *work->mutable_trial() = TrialProto(study, study.trials.at(job.request().trial()));
    work->set_baseline_refusals(study.baseline_refusals);
    leases_[lease.id] = std::move(lease);
    return item;
  }
  return item;
}

void StudyManager::RequeueExport(const Lease& lease, const std::string& reason, bool permanent) {
  v1::ExportJob& job = exports_.at(lease.export_id);
  if (job.state() != v1::EXPORT_STATE_RUNNING) return;
  const Study& study = *studies_.at(lease.study_id);
  if (permanent || job.attempts() >= study.spec.max_attempts()) {
    job.set_state(v1::EXPORT_STATE_FAILED);
    job.set_error(permanent ? reason : absl::StrCat("failed ", job.attempts(), " times; last: ", reason));
  } else {
    job.set_state(v1::EXPORT_STATE_QUEUED);
    job.set_error(reason);
  }
  if (auto s = JournalExport(job); !s.ok()) StoreRefused("export " + job.export_id(), s);
}

}  // namespace schism::coordinator
