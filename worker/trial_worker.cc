#include "worker/trial_worker.h"

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "worker/runtime/device.h"
#include "worker/runtime/directions.h"
#include "worker/runtime/response_prefix.h"
#include "worker/runtime/trial_evaluator.h"
#include "common/prompt_set.h"
#include "worker/coordinator_link.h"

namespace schism::worker {

struct TrialWorker::State {
  std::unique_ptr<CoordinatorLink> link;
  // Loaded model and the evaluator of the study it serves.
  std::string model_key;
  std::unique_ptr<model::LoadedModel> model;
  std::string evaluator_study;
  std::unique_ptr<model::TrialEvaluator> evaluator;
};

TrialWorker::TrialWorker(WorkerOptions options) : options_(std::move(options)), state_(std::make_unique<State>()) {}
TrialWorker::~TrialWorker() = default;

absl::Status TrialWorker::Run() {
  State& st = *state_;
  options_.link.role = v1::WORKER_ROLE_TRIALS;
  st.link = std::make_unique<CoordinatorLink>(options_.link);
  CoordinatorLink& link = *st.link;
  model::SetComputeThreads(options_.threads);

  while (true) {
    auto next = link.Next(options_.trials_per_batch, st.model ? st.model_key.substr(0, st.model_key.find('|')) : "",
                          options_.exit_after_idle_polls);
    if (!next.ok()) return next.status();
    if (!next->has_value()) break;
    const v1::WorkItem item = std::move(**next);
    auto heartbeat = link.StartHeartbeat(item);
    // A library that throws (libtorch on an input it rejects, an allocation a corrupt file asked
    // for) fails this work item with the reason; the worker serves the next one.
    try {
      Serve(item, *heartbeat);
    } catch (const std::exception& e) {
      link.Fail(item, std::string("worker error: ") + e.what());
    }
  }
  return absl::OkStatus();
}

void TrialWorker::Serve(const v1::WorkItem& item, CoordinatorLink::Heartbeat& heartbeat) {
  State& st = *state_;
  CoordinatorLink& link = *st.link;
  v1::StudySpec spec = item.spec();
  auto fail = [&](const std::string& reason) { link.Fail(item, reason); };

  // The model, loaded once per (path, quantization).
  std::string model_key = spec.model() + "|" + spec.quantization();
  for (const std::string& d : spec.dtypes()) model_key += "|" + d;
  if (!st.model || st.model_key != model_key) {
    st.evaluator.reset();
    st.evaluator_study.clear();
    model::LoadOptions load;
    load.device = options_.device;
    if (spec.quantization() == "nf4") load.quantization = model::Quantization::kNf4;
    // The worker's --dtype, else the study's dtypes in order (Heretic: the next one is tried
    // when loading in one fails), else the device's default.
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
      if (loaded.ok()) break;
    }
    if (!loaded.ok()) {
      fail(std::string(loaded.status().message()));
      st.model.reset();
      return;
    }
    st.model = std::make_unique<model::LoadedModel>(std::move(*loaded));
    st.model_key = model_key;
  }
  // Heretic's dataset options: "prefix prompt suffix" (space-joined), and the set's own system
  // prompt over the study's.
  auto prompts = [&](const v1::PromptSet& set) -> absl::StatusOr<std::vector<model::TokenIds>> {
    auto lines = common::LoadPromptLines(set.path(), set.split(), set.column());
    if (!lines.ok()) return lines.status();
    for (std::string& line : *lines) {
      if (!set.prefix().empty()) line = set.prefix() + " " + line;
      if (!set.suffix().empty()) line = line + " " + set.suffix();
    }
    const std::string& system = set.has_system_prompt() ? set.system_prompt() : spec.system_prompt();
    return model::EncodeChatPrompts(*st.model, *lines, system, spec.response_prefix());
  };
  auto make_evaluator = [&](at::Tensor directions) -> absl::StatusOr<std::unique_ptr<model::TrialEvaluator>> {
    auto refusal = prompts(spec.refusal_prompts());
    if (!refusal.ok()) return refusal.status();
    auto kl = prompts(spec.kl_prompts());
    if (!kl.ok()) return kl.status();
    model::EvaluatorOptions options;
    options.max_response_length = spec.max_response_length();
    options.batch_size = spec.batch_size();
    auto mode = model::ParseRowNormalization(spec.row_normalization());
    if (!mode.ok()) return mode.status();
    options.row_normalization = *mode;
    options.markers.assign(spec.refusal_markers().begin(), spec.refusal_markers().end());
    return model::TrialEvaluator::Create(*st.model, std::move(directions), std::move(*refusal), std::move(*kl), options);
  };

  v1::ReportResultRequest report;
  if (item.has_prepare()) {
    const int32_t pad = st.model->tokenizer->spec().pad_id.value_or(0);
    const auto& t = *st.model->transformer;
    if (spec.response_prefix().empty()) {
      // Greedy responses to 100 good + 100 bad prompts; their common start is the prefix.
      auto good_lines = common::LoadPromptLines(spec.good_prompts().path(), "[:100]", spec.good_prompts().column());
      auto bad_lines = common::LoadPromptLines(spec.bad_prompts().path(), "[:100]", spec.bad_prompts().column());
      if (!good_lines.ok() || !bad_lines.ok()) {
        fail(std::string((good_lines.ok() ? bad_lines.status() : good_lines.status()).message()));
        return;
      }
      std::vector<std::string> lines = *good_lines;
      lines.insert(lines.end(), bad_lines->begin(), bad_lines->end());
      model::GreedyOptions greedy;
      greedy.max_new_tokens = spec.max_response_length();
      greedy.stop_ids = st.model->stop_ids;
      greedy.pad_id = pad;
      auto encoded = model::EncodeChatPrompts(*st.model, lines, spec.system_prompt(), "");
      if (!encoded.ok()) {
        fail(std::string(encoded.status().message()));
        return;
      }
      std::string prefix = model::CommonResponsePrefix(t, *st.model->tokenizer, *encoded, greedy);
      const std::string skipped = model::ApplyChainOfThoughtSkip(prefix);
      if (skipped != prefix) {  // a closed thinking block; look again for what follows it
        auto again = model::EncodeChatPrompts(*st.model, lines, spec.system_prompt(), skipped);
        if (again.ok()) prefix = skipped + model::CommonResponsePrefix(t, *st.model->tokenizer, *again, greedy);
      }
      spec.set_response_prefix(prefix);
      report.set_response_prefix(prefix);
    }
    auto good = prompts(spec.good_prompts());
    auto bad = prompts(spec.bad_prompts());
    if (!good.ok() || !bad.ok()) {
      fail(std::string((good.ok() ? bad.status() : good.status()).message()));
      return;
    }
    const double q = spec.has_winsorization_quantile() ? spec.winsorization_quantile() : 1.0;
    at::Tensor directions = model::RefusalDirections(model::ResidualMeans(t, *good, pad, spec.batch_size(), q),
                                                     model::ResidualMeans(t, *bad, pad, spec.batch_size(), q),
                                                     spec.orthogonalize_direction());
    auto evaluator = make_evaluator(directions);
    if (!evaluator.ok()) {
      fail(std::string(evaluator.status().message()));
      return;
    }
    report.set_artifact(model::SerializeDirections(directions));
    report.set_baseline_refusals((*evaluator)->Baseline().refusals);
    report.set_num_layers(t.config().num_layers);
    st.evaluator = std::move(*evaluator);
    st.evaluator_study = item.study_id();
  } else {
    if (st.evaluator_study != item.study_id()) {
      auto bytes = link.FetchArtifact(item.study_id());
      auto directions = bytes.ok() ? model::ParseDirections(*bytes, "study " + item.study_id() + " artifact")
                                   : absl::StatusOr<at::Tensor>(bytes.status());
      if (!directions.ok()) {
        fail(std::string(directions.status().message()));
        return;
      }
      auto evaluator = make_evaluator(*directions);
      if (!evaluator.ok()) {
        fail(std::string(evaluator.status().message()));
        return;
      }
      st.evaluator = std::move(*evaluator);
      st.evaluator_study = item.study_id();
    }
    std::vector<common::TrialParameters> trials;
    for (const v1::Trial& t : item.evaluate().trials()) {
      auto params = common::TrialParametersFromJson(TrialParamsJson(t));
      if (!params.ok()) break;
      trials.push_back(*params);
    }
    if (static_cast<int>(trials.size()) != item.evaluate().trials_size()) {
      fail("malformed trial parameters in lease");
      return;
    }
    const auto scores = st.evaluator->Evaluate(trials);
    for (size_t i = 0; i < scores.size(); ++i) {
      v1::TrialResult* r = report.add_results();
      r->set_number(item.evaluate().trials(static_cast<int>(i)).number());
      r->mutable_scores()->set_refusals(scores[i].refusals);
      r->mutable_scores()->set_refusal_prompts(scores[i].refusal_prompts);
      r->mutable_scores()->set_kl_divergence(scores[i].kl_divergence);
    }
  }
  if (heartbeat.lost()) return;  // the lease went to someone else; the report would be stale
  (void)link.Report(item, std::move(report));
}

}  // namespace schism::worker
