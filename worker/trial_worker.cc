#include "worker/trial_worker.h"

#include <ATen/ATen.h>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/prompt_set.h"
#include "common/trial_parameters.h"
#include "worker/coordinator_link.h"
#include "worker/prompt_encoding.h"
#include "worker/runtime/device.h"
#include "worker/runtime/directions.h"
#include "worker/runtime/response_prefix.h"
#include "worker/runtime/trial_evaluator.h"
#include "worker/study_scorers.h"

namespace schism::worker {

struct TrialWorker::State {
  // Loaded model and the evaluator of the study it serves.
  std::string model_key;
  std::unique_ptr<model::LoadedModel> model;
  std::string evaluator_study;
  std::unique_ptr<model::TrialEvaluator> evaluator;
  std::unique_ptr<Scorer> objectives = MakeObjectiveScorer();
  std::vector<std::unique_ptr<Scorer>> other_scorers;  // the study's Judge, Perplexity
  // Where the other scorers' last entries went in the report being built: a result's index, or
  // -1 for the baseline; Conclude finishes them there.
  std::vector<int> concluding;
};

namespace {

std::string ModelKey(const v1::StudySpec& spec) {
  std::string key = spec.model() + "|" + spec.quantization();
  for (const std::string& d : spec.dtypes()) key += "|" + d;
  return key;
}

// Rank 0's messages to the other ranks of a tensor-parallel worker: a step and its work item,
// an artifact the step fetched, or the end.
constexpr char kReadyStep = 'R', kServeStep = 'S', kArtifact = 'A', kQuit = 'Q';

std::string ArtifactMessage(const absl::StatusOr<std::string>& artifact) {
  if (artifact.ok()) return std::string(1, kArtifact) + "1" + *artifact;
  return absl::StrCat(std::string(1, kArtifact), "0", static_cast<int>(artifact.status().code()),
                      ":", artifact.status().message());
}

absl::StatusOr<std::string> ParseArtifactMessage(const std::string& message) {
  if (message.size() < 2 || message[0] != kArtifact)
    return absl::InternalError("tensor parallel: out of step with rank 0 (expected an artifact)");
  if (message[1] == '1') return message.substr(2);
  const size_t colon = message.find(':');
  int code = static_cast<int>(absl::StatusCode::kUnknown);
  if (colon != std::string::npos) code = std::atoi(message.substr(2, colon - 2).c_str());
  return absl::Status(static_cast<absl::StatusCode>(code),
                      colon == std::string::npos ? "" : message.substr(colon + 1));
}

// The study's evaluator, and its scorers beyond the objectives (study_scorers.h).
struct StudyEvaluation {
  std::unique_ptr<model::TrialEvaluator> evaluator;
  std::vector<std::unique_ptr<Scorer>> other_scorers;
};

absl::StatusOr<StudyEvaluation> MakeEvaluator(const model::LoadedModel& model,
                                              const v1::StudySpec& spec, at::Tensor directions) {
  std::vector<std::string> refusal_texts;
  auto refusal = EncodePromptSet(model, spec, spec.refusal_prompts(), spec.response_prefix(),
                                 std::numeric_limits<size_t>::max(), &refusal_texts);
  if (!refusal.ok()) return refusal.status();
  auto kl = EncodePromptSet(model, spec, spec.kl_prompts(), spec.response_prefix());
  if (!kl.ok()) return kl.status();
  model::EvaluatorOptions options;
  options.max_response_length = spec.max_response_length();
  options.batch_size = spec.batch_size();
  auto mode = model::ParseRowNormalization(spec.row_normalization());
  if (!mode.ok()) return mode.status();
  options.row_normalization = *mode;
  options.markers.assign(spec.refusal_markers().begin(), spec.refusal_markers().end());
  const model::TensorParallel* tp = model.transformer->tensor_parallel();
  auto others = MakeOtherScorers(model, spec, std::move(refusal_texts),
                                 /*contacts_judge=*/tp == nullptr || tp->rank() == 0);
  if (tp != nullptr) {
    if (auto agreed = tp->Agree(others.status()); !agreed.ok()) return agreed;
  }
  if (!others.ok()) return others.status();
  auto evaluator = model::TrialEvaluator::Create(model, std::move(directions), std::move(*refusal),
                                                 std::move(*kl), options);
  if (!evaluator.ok()) return evaluator.status();
  return StudyEvaluation{std::move(*evaluator), std::move(*others)};
}

// Runs the study's other scorers on `trials` (none: the baseline) into `scores`.
absl::Status ScoreOthers(const std::vector<std::unique_ptr<Scorer>>& scorers,
                         model::TrialEvaluator& evaluator,
                         const std::vector<common::TrialParameters>& trials,
                         std::vector<v1::TrialScores>& scores) {
  for (const auto& scorer : scorers) {
    if (auto s = scorer->Score(evaluator, trials, scores); !s.ok())
      return absl::Status(s.code(), absl::StrCat(scorer->name(), " scorer: ", s.message()));
  }
  return absl::OkStatus();
}

// The common start of the model's greedy responses to the first 100 prompts of the good and of
// the bad set (past a closed thinking block, if it opens with one), as Heretic checks it:
// good_prompts[:100] + bad_prompts[:100] of the sets as loaded (split, prefix, suffix and system
// prompt applied).
absl::StatusOr<std::string> FindResponsePrefix(const model::LoadedModel& model,
                                               const v1::StudySpec& spec) {
  auto encode =
      [&](const std::string& response_prefix) -> absl::StatusOr<std::vector<model::TokenIds>> {
    auto good = EncodePromptSet(model, spec, spec.good_prompts(), response_prefix, 100);
    if (!good.ok()) return good.status();
    auto bad = EncodePromptSet(model, spec, spec.bad_prompts(), response_prefix, 100);
    if (!bad.ok()) return bad.status();
    good->insert(good->end(), std::make_move_iterator(bad->begin()),
                 std::make_move_iterator(bad->end()));
    return good;
  };
  model::GreedyOptions greedy;
  greedy.max_new_tokens = spec.max_response_length();
  greedy.stop_ids = model.stop_ids;
  greedy.pad_id = model.tokenizer->spec().pad_id.value_or(0);
  auto encoded = encode("");
  if (!encoded.ok()) return encoded.status();
  std::string prefix =
      model::CommonResponsePrefix(*model.transformer, *model.tokenizer, *encoded, greedy);
  const std::string skipped = model::ApplyChainOfThoughtSkip(prefix);
  if (skipped != prefix) {  // a closed thinking block; look again for what follows it
    auto again = encode(skipped);
    if (again.ok())
      prefix = skipped +
               model::CommonResponsePrefix(*model.transformer, *model.tokenizer, *again, greedy);
  }
  return prefix;
}

// A library that throws (libtorch on an input it rejects, an allocation a corrupt file asked
// for) fails the step with the reason instead of the worker; it serves the next item.
template <typename Step>
auto CatchLibraryErrors(Step&& step) -> decltype(step()) {
  try {
    return step();
  } catch (const std::exception& e) {
    return absl::InternalError(std::string("worker error: ") + e.what());
  }
}

}  // namespace

TrialWorker::TrialWorker(WorkerOptions options)
    : options_(std::move(options)), state_(std::make_unique<State>()) {
  options_.link.device = options_.device.str();
}
TrialWorker::~TrialWorker() = default;

const std::string& TrialWorker::loaded_model_key() const { return state_->model_key; }

std::optional<c10::ScalarType> TrialWorker::loaded_dtype() const {
  if (!state_->model) return std::nullopt;
  return state_->model->transformer->options().dtype().toScalarType();
}

absl::Status TrialWorker::Run() {
  model::TensorParallel* tp = options_.tensor_parallel.get();
  model::SetComputeThreads(options_.threads);
  if (tp != nullptr && tp->rank() != 0) return Follow();
  options_.link.role = v1::WORKER_ROLE_TRIALS;
  CoordinatorLink link(options_.link);
  // The other ranks hear of each step before it starts, and of its artifacts as they come.
  auto announce = [&](char step, const v1::WorkItem& item) {
    if (tp != nullptr) tp->Publish(std::string(1, step) + item.SerializeAsString());
  };
  struct QuitOnReturn {
    model::TensorParallel* tp;
    ~QuitOnReturn() {
      if (tp != nullptr) tp->Publish(std::string(1, kQuit));
    }
  } quit_on_return{tp};
  // Each step ends with all ranks meeting: one that cannot (died, or threw out of a collective the
  // others finished) has broken the group, and the worker ends rather than serve out of step.
  auto group_intact = [&]() -> absl::Status {
    return tp != nullptr ? tp->Agree(absl::OkStatus()) : absl::OkStatus();
  };
  const ArtifactSource artifacts = [&](const std::string& study_id) {
    auto artifact = link.FetchArtifact(study_id);
    if (tp != nullptr) tp->Publish(ArtifactMessage(artifact));
    return artifact;
  };
  auto loaded_model = [&] { return state_->model_key.substr(0, state_->model_key.find('|')); };
  while (true) {
    // Peek, get ready, then lease: leased trials never wait behind this worker's model load.
    auto peeked = link.Next(options_.trials_per_batch, loaded_model(),
                            options_.exit_after_idle_polls, /*peek=*/true);
    if (!peeked.ok()) return peeked.status();
    if (!peeked->has_value()) return absl::OkStatus();
    announce(kReadyStep, **peeked);
    if (auto ready = Ready(**peeked, artifacts); !ready.ok()) {
      std::fprintf(stderr, "schism worker: getting ready for study %s: %s\n",
                   (*peeked)->study_id().c_str(), std::string(ready.message()).c_str());
    }
    if (auto intact = group_intact(); !intact.ok()) return intact;
    auto next =
        link.Next(options_.trials_per_batch, loaded_model(), options_.exit_after_idle_polls);
    if (!next.ok()) return next.status();
    if (!next->has_value()) return absl::OkStatus();
    const v1::WorkItem item = std::move(**next);
    auto heartbeat = link.StartHeartbeat(item);
    announce(kServeStep, item);
    auto report = Serve(item, artifacts);
    if (auto intact = group_intact(); !intact.ok()) {
      link.ReturnLost(item, std::string(intact.message()));
      return intact;
    }
    if (tp != nullptr && report.ok()) Conclude(&*report);  // the judge's requests, ranks apart
    if (!report.ok()) {
      link.Fail(item, std::string(report.status().message()));
    } else if (!heartbeat
                    ->lost()) {  // a lost lease went to someone else; the report would be stale
      (void)link.Report(item, std::move(*report));
    }
  }
}

void TrialWorker::Conclude(v1::ReportResultRequest* report) {
  State& st = *state_;
  if (st.concluding.empty()) return;
  std::vector<v1::TrialScores*> targets;
  for (int index : st.concluding) {
    targets.push_back(index < 0 ? report->mutable_baseline()
                                : report->mutable_results(index)->mutable_scores());
  }
  st.concluding.clear();
  for (const auto& scorer : st.other_scorers) scorer->Conclude(targets);
}

absl::Status TrialWorker::Follow() {
  model::TensorParallel& tp = *options_.tensor_parallel;
  const ArtifactSource artifacts = [&](const std::string&) -> absl::StatusOr<std::string> {
    auto message = tp.NextMessage();
    if (!message.ok()) return message.status();
    return ParseArtifactMessage(*message);
  };
  while (true) {
    auto message = tp.NextMessage();
    if (!message.ok()) return message.status();
    if (message->empty() || (*message)[0] == kQuit) return absl::OkStatus();
    v1::WorkItem item;
    const char step = (*message)[0];
    if ((step != kReadyStep && step != kServeStep) ||
        !item.ParseFromArray(message->data() + 1, static_cast<int>(message->size() - 1))) {
      return absl::InternalError(absl::StrCat("tensor parallel: rank ", tp.rank(),
                                              " got a message it cannot read from rank 0"));
    }
    // Rank 0 reports (or fails) the item; a follower's own error is only logged.
    const absl::Status status =
        step == kReadyStep ? Ready(item, artifacts) : Serve(item, artifacts).status();
    if (!status.ok()) {
      std::fprintf(stderr, "schism worker (tensor-parallel rank %d): study %s: %s\n", tp.rank(),
                   item.study_id().c_str(), std::string(status.message()).c_str());
    }
    if (auto intact = tp.Agree(absl::OkStatus()); !intact.ok()) return intact;
  }
}

absl::StatusOr<v1::ReportResultRequest> TrialWorker::Serve(const v1::WorkItem& item,
                                                           const ArtifactSource& artifacts) {
  return CatchLibraryErrors([&]() -> absl::StatusOr<v1::ReportResultRequest> {
    if (auto s = LoadModel(item.spec()); !s.ok()) return s;
    return item.has_prepare() ? Prepare(item) : Evaluate(item, artifacts);
  });
}

absl::Status TrialWorker::Ready(const v1::WorkItem& peeked, const ArtifactSource& artifacts) {
  return CatchLibraryErrors([&]() -> absl::Status {
    if (auto s = LoadModel(peeked.spec()); !s.ok()) return s;
    if (!peeked.has_evaluate()) return absl::OkStatus();  // a prepare builds its own evaluator
    return EnsureEvaluator(peeked.study_id(), peeked.spec(), artifacts);
  });
}

absl::Status TrialWorker::EnsureEvaluator(const std::string& study_id, const v1::StudySpec& spec,
                                          const ArtifactSource& artifacts) {
  State& st = *state_;
  if (!st.model)
    return absl::FailedPreconditionError("evaluate before the study's model was loaded");
  if (st.evaluator && st.evaluator_study == study_id) return absl::OkStatus();
  st.evaluator.reset();
  st.other_scorers.clear();
  st.evaluator_study.clear();
  auto bytes = artifacts(study_id);
  if (!bytes.ok()) return bytes.status();
  auto directions = model::ParseDirections(*bytes, "study " + study_id + " artifact");
  if (!directions.ok()) return directions.status();
  auto evaluation = MakeEvaluator(*st.model, spec, *directions);
  if (!evaluation.ok()) return evaluation.status();
  st.evaluator = std::move(evaluation->evaluator);
  st.other_scorers = std::move(evaluation->other_scorers);
  st.evaluator_study = study_id;
  return absl::OkStatus();
}

absl::Status TrialWorker::LoadModel(const v1::StudySpec& spec) {
  State& st = *state_;
  const std::string key = ModelKey(spec);
  if (st.model && st.model_key == key) return absl::OkStatus();
  st.evaluator.reset();
  st.other_scorers.clear();
  st.evaluator_study.clear();
  st.model.reset();
  st.model_key.clear();
  model::LoadOptions load;
  load.device = options_.device;
  load.tensor_parallel = options_.tensor_parallel;
  if (spec.quantization() == "nf4") load.quantization = model::Quantization::kNf4;
  std::vector<c10::ScalarType> dtypes;
  if (options_.dtype) {
    dtypes.push_back(*options_.dtype);
  } else {
    for (const std::string& d : spec.dtypes()) {
      auto parsed = model::ParseComputeDtype(d == "auto" ? "" : d, options_.device);
      if (parsed.ok()) dtypes.push_back(*parsed);
    }
    if (dtypes.empty()) dtypes.push_back(*model::ParseComputeDtype("", options_.device));
  }
  absl::StatusOr<model::LoadedModel> loaded = absl::UnknownError("no dtype to load in");
  for (c10::ScalarType dtype : dtypes) {
    load.dtype = dtype;
    loaded = model::LoadModel(spec.model(), load);
    // Every rank loads in the same dtype, or none goes on (a file one host lacks).
    if (options_.tensor_parallel) {
      if (auto agreed = options_.tensor_parallel->Agree(loaded.status()); !agreed.ok())
        loaded = agreed;
    }
    if (loaded.ok()) break;
  }
  if (!loaded.ok()) return loaded.status();
  st.model = std::make_unique<model::LoadedModel>(std::move(*loaded));
  st.model_key = key;
  return absl::OkStatus();
}

absl::StatusOr<v1::ReportResultRequest> TrialWorker::Prepare(const v1::WorkItem& item) {
  State& st = *state_;
  if (!st.model)
    return absl::FailedPreconditionError("prepare before the study's model was loaded");
  v1::StudySpec spec = item.spec();
  v1::ReportResultRequest report;
  if (!spec.has_response_prefix()) {  // set, even to "", it is the user's (or Heretic's record)
    auto prefix = FindResponsePrefix(*st.model, spec);
    if (!prefix.ok()) return prefix.status();
    spec.set_response_prefix(*prefix);
    report.set_response_prefix(*prefix);
  }
  auto good = EncodePromptSet(*st.model, spec, spec.good_prompts(), spec.response_prefix());
  if (!good.ok()) return good.status();
  auto bad = EncodePromptSet(*st.model, spec, spec.bad_prompts(), spec.response_prefix());
  if (!bad.ok()) return bad.status();
  const auto& t = *st.model->transformer;
  const int32_t pad = st.model->tokenizer->spec().pad_id.value_or(0);
  const double q = spec.has_winsorization_quantile() ? spec.winsorization_quantile() : 1.0;
  at::Tensor directions = model::RefusalDirections(
      model::ResidualMeans(t, *good, pad, spec.batch_size(), q),
      model::ResidualMeans(t, *bad, pad, spec.batch_size(), q), spec.orthogonalize_direction());
  auto evaluation = MakeEvaluator(*st.model, spec, directions);
  if (!evaluation.ok()) return evaluation.status();
  report.set_artifact(model::SerializeDirections(directions));
  std::vector<v1::TrialScores> baseline(1);
  if (auto s = st.objectives->Score(*evaluation->evaluator, {}, baseline); !s.ok()) return s;
  if (auto s = ScoreOthers(evaluation->other_scorers, *evaluation->evaluator, {}, baseline);
      !s.ok())
    return s;
  report.set_baseline_refusals(baseline[0].refusals());
  if (!evaluation->other_scorers.empty()) {
    baseline[0].clear_refusals();
    baseline[0].clear_refusal_prompts();
    *report.mutable_baseline() = baseline[0];
  }
  report.set_num_layers(t.config().num_layers);
  st.evaluator = std::move(evaluation->evaluator);
  st.other_scorers = std::move(evaluation->other_scorers);
  st.evaluator_study = item.study_id();
  if (!st.other_scorers.empty()) st.concluding = {-1};
  if (options_.tensor_parallel == nullptr) Conclude(&report);  // else Run, once all ranks met
  return report;
}

absl::StatusOr<v1::ReportResultRequest> TrialWorker::Evaluate(const v1::WorkItem& item,
                                                              const ArtifactSource& artifacts) {
  State& st = *state_;
  if (!st.model)
    return absl::FailedPreconditionError("evaluate before the study's model was loaded");
  // Decode the lease first: a malformed one costs no evaluator.
  std::vector<common::TrialParameters> trials;
  for (const v1::Trial& t : item.evaluate().trials()) {
    auto params = common::TrialParametersFromValues(TrialParameterValues(t));
    if (!params.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("malformed trial parameters in lease: trial ",
                                                     t.number(), ": ", params.status().message()));
    }
    trials.push_back(*params);
  }
  if (auto ready = EnsureEvaluator(item.study_id(), item.spec(), artifacts); !ready.ok())
    return ready;
  std::vector<v1::TrialScores> scores(trials.size());
  if (auto s = st.objectives->Score(*st.evaluator, trials, scores); !s.ok()) return s;
  if (!st.other_scorers.empty()) {
    // Only the trials that would join the front as it stood when leased. With tensor
    // parallelism rank 0's choice goes to every rank: a near tie decided differently on another
    // rank's rounding would send the ranks into different collectives.
    std::vector<int64_t> joins(trials.size());
    for (size_t i = 0; i < trials.size(); ++i) {
      joins[i] = OnParetoFront(item.evaluate().trials(static_cast<int>(i)).number(), scores[i],
                               item.evaluate().pareto_front());
    }
    if (const model::TensorParallel* tp = options_.tensor_parallel.get(); tp != nullptr) {
      at::Tensor flags = at::tensor(joins, at::kLong).to(st.model->transformer->options().device());
      tp->Broadcast(flags);
      flags = flags.to(at::kCPU);
      for (size_t i = 0; i < joins.size(); ++i)
        joins[i] = flags[static_cast<int64_t>(i)].item<int64_t>();
    }
    std::vector<size_t> chosen;
    std::vector<common::TrialParameters> candidates;
    std::vector<v1::TrialScores> candidate_scores;
    for (size_t i = 0; i < trials.size(); ++i) {
      if (joins[i] == 0) continue;
      chosen.push_back(i);
      candidates.push_back(trials[i]);
      candidate_scores.push_back(scores[i]);
    }
    st.concluding.clear();
    if (!candidates.empty()) {
      if (auto s = ScoreOthers(st.other_scorers, *st.evaluator, candidates, candidate_scores);
          !s.ok())
        return s;
      for (size_t c = 0; c < chosen.size(); ++c) {
        scores[chosen[c]] = candidate_scores[c];
        st.concluding.push_back(static_cast<int>(chosen[c]));
      }
    }
  }
  v1::ReportResultRequest report;
  for (size_t i = 0; i < scores.size(); ++i) {
    v1::TrialResult* r = report.add_results();
    r->set_number(item.evaluate().trials(static_cast<int>(i)).number());
    *r->mutable_scores() = scores[i];
  }
  if (options_.tensor_parallel == nullptr) Conclude(&report);  // else Run, once all ranks met
  return report;
}

}  // namespace schism::worker
