#include "cli/reproduction.h"

#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/env.h"
#include "common/prompt_set.h"
#include "coordinator/study_spec.h"

namespace schism::cli {
namespace {

namespace fs = std::filesystem;

// The files the data directory derives from Heretic's default datasets (its SOURCES.md).
struct LocalCopy {
  const char* dataset;
  const char* split;
  const char* file;
};
constexpr LocalCopy kLocalCopies[] = {{"mlabonne/harmless_alpaca", "train", "harmless_train.txt"},
                                      {"mlabonne/harmless_alpaca", "test", "harmless_test.txt"},
                                      {"mlabonne/harmful_behaviors", "train", "harmful_train.txt"},
                                      {"mlabonne/harmful_behaviors", "test", "harmful_test.txt"}};

absl::Status MapDataset(const std::string& key, const common::HereticDatasetSpec& d,
                        v1::PromptSet* out) {
  const std::string split = d.split.value_or("");
  if (fs::is_regular_file(d.dataset) || fs::is_directory(d.dataset)) {  // a file or dataset folder
    out->set_path(d.dataset);
    out->set_split(split);
  } else {
    const LocalCopy* copy = nullptr;
    std::string slice;
    for (const LocalCopy& c : kLocalCopies) {
      if (d.dataset == c.dataset && absl::StartsWith(split, c.split)) {
        copy = &c;
        slice = split.substr(std::string(c.split).size());
      }
    }
    if (copy == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "settings.", key, ".dataset \"", d.dataset, "\" split \"", split,
          "\": not a file here, and not one of Heretic's default datasets schism keeps in the "
          "data directory (mlabonne/harmless_alpaca, mlabonne/harmful_behaviors: train, test)"));
    }
    out->set_path(common::DefaultDataDir() + "/" + copy->file);
    out->set_split(slice);
    // The local file holds only part of the split: a slice past its end would quietly score
    // fewer prompts than Heretic did.
    auto parsed = common::ParsePromptSlice(slice);
    if (!parsed.ok()) return parsed.status();
    auto all = common::LoadPromptLines(out->path(), "");
    if (!all.ok()) return all.status();
    const long held = static_cast<long>(all->size());
    if (!parsed->stop || *parsed->stop > held || (parsed->start && *parsed->start < 0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "settings.", key, ": split \"", split, "\" of ", d.dataset, " reaches past the ", held,
          " prompts of its local copy ", out->path(), " (", copy->split, "[:", held, "])"));
    }
  }
  if (d.column) out->set_column(*d.column);
  out->set_prefix(d.prefix);
  out->set_suffix(d.suffix);
  if (d.system_prompt) out->set_system_prompt(*d.system_prompt);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Reproduction> LoadReproduction(const std::string& path,
                                              const std::optional<std::string>& model_override) {
  auto source = common::ReadHereticReproduction(path);
  if (!source.ok()) return source.status();
  const common::HereticSettings& s = source->settings;
  Reproduction r;
  r.source = *source;
  v1::StudySpec& spec = r.spec;
  spec.set_model(model_override.value_or(s.model));
  if (!model_override && !fs::exists(s.model)) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": settings.model \"", s.model,
        "\" is not on this machine; pass --model with a local copy (a Hugging Face folder or a "
        "GGUF file)"));
  }
  spec.set_quantization(s.quantization.value_or("none") == "bnb_4bit" ? "nf4" : "none");
  if (s.dtypes) {
    for (const std::string& d : *s.dtypes) spec.add_dtypes(d);
  }
  // batch_size only changes how many rows run together; 0 is Heretic's "auto".
  if (s.batch_size && *s.batch_size > 0) spec.set_batch_size(static_cast<int>(*s.batch_size));
  if (s.max_response_length) spec.set_max_response_length(static_cast<int>(*s.max_response_length));
  // A recorded prefix is used as it is, an empty one ("Heretic found none") too: no detection,
  // as Heretic itself with these settings (it detects only when response_prefix is None).
  if (s.response_prefix) spec.set_response_prefix(*s.response_prefix);
  spec.set_orthogonalize_direction(s.orthogonalize_direction.value_or(true));
  if (s.row_normalization) spec.set_row_normalization(*s.row_normalization);
  if (s.winsorization_quantile) spec.set_winsorization_quantile(*s.winsorization_quantile);
  if (s.kl_divergence_scale) spec.set_kl_divergence_scale(*s.kl_divergence_scale);
  if (s.kl_divergence_target) spec.set_kl_divergence_target(*s.kl_divergence_target);
  if (s.refusal_markers) {
    for (const std::string& m : *s.refusal_markers) spec.add_refusal_markers(m);
  }
  if (s.system_prompt) spec.set_system_prompt(*s.system_prompt);
  if (s.max_shard_bytes) spec.set_max_shard_bytes(*s.max_shard_bytes);
  if (s.export_strategy)
    spec.set_export_format(*s.export_strategy == "merge" ? "merged" : "adapter");
  const std::pair<const char*, const std::optional<common::HereticDatasetSpec>*> sets[] = {
      {"good_prompts", &s.good_prompts},
      {"bad_prompts", &s.bad_prompts},
      {"good_evaluation_prompts", &s.good_evaluation_prompts},
      {"bad_evaluation_prompts", &s.bad_evaluation_prompts}};
  v1::PromptSet* targets[] = {spec.mutable_good_prompts(), spec.mutable_bad_prompts(),
                              spec.mutable_kl_prompts(), spec.mutable_refusal_prompts()};
  for (int i = 0; i < 4; ++i) {
    if (!*sets[i].second) continue;  // Heretic's default, which NormalizeStudySpec fills in
    if (auto st = MapDataset(sets[i].first, **sets[i].second, targets[i]); !st.ok()) {
      return absl::Status(st.code(), absl::StrCat(path, ": ", st.message()));
    }
  }
  auto normalized = coordinator::NormalizeStudySpec(spec);
  if (!normalized.ok()) {
    return absl::Status(normalized.status().code(),
                        absl::StrCat(path, ": ", normalized.status().message()));
  }
  spec = *normalized;
  r.trial.set_state(v1::TRIAL_STATE_COMPLETE);
  for (const auto& [name, value] : source->params) {
    v1::ParamValue& v = (*r.trial.mutable_params()->mutable_values())[name];
    if (const auto* text = std::get_if<std::string>(&value)) {
      v.set_categorical_value(*text);
    } else {
      v.set_float_value(std::get<double>(value));
    }
  }
  return r;
}

absl::StatusOr<v1::ReportResultRequest> PrepareReproduction(worker::TrialWorker& worker,
                                                            Reproduction* r) {
  v1::WorkItem item;
  item.set_study_id("reproduce");
  *item.mutable_spec() = r->spec;
  item.mutable_prepare();
  auto report = worker.Serve(item, nullptr);
  if (!report.ok()) return report.status();
  if (!r->spec.has_response_prefix()) r->spec.set_response_prefix(report->response_prefix());
  return report;
}

}  // namespace schism::cli
