#include "coordinator/study_spec.h"

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/env.h"

namespace schism::coordinator {
namespace {

void DefaultPromptSet(v1::PromptSet* set, const char* file, const char* split) {
  if (set->path().empty()) set->set_path(common::DefaultDataDir() + "/" + file);
  if (set->split().empty() && split != nullptr) set->set_split(split);
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
    return bad("quantization",
               "expected none, nf4 or bnb_4bit, got \"" + spec.quantization() + "\"");
  }
  if (spec.n_trials() == 0) spec.set_n_trials(200);
  // A study detail carries every trial (~250 bytes each); 100,000 stay well inside a 64 MiB reply.
  if (spec.n_trials() < 1 || spec.n_trials() > 100000)
    return bad("n_trials", "must be in [1, 100000]");
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
    return bad("row_normalization",
               "expected none, pre or full, got \"" + spec.row_normalization() + "\"");
  }
  if (!spec.has_orthogonalize_direction()) spec.set_orthogonalize_direction(true);
  DefaultPromptSet(spec.mutable_good_prompts(), "harmless_train.txt", "[:400]");
  DefaultPromptSet(spec.mutable_bad_prompts(), "harmful_train.txt", "[:400]");
  DefaultPromptSet(spec.mutable_refusal_prompts(), "harmful_test.txt", "[:100]");
  DefaultPromptSet(spec.mutable_kl_prompts(), "harmless_test.txt", "[:100]");
  if (spec.trials_per_lease() == 0) spec.set_trials_per_lease(1);
  if (spec.trials_per_lease() < 1 || spec.trials_per_lease() > 64)
    return bad("trials_per_lease", "must be in [1, 64]");
  if (spec.lease_seconds() == 0) spec.set_lease_seconds(60);
  if (spec.lease_seconds() < 1) return bad("lease_seconds", "must be >= 1");
  if (spec.max_attempts() == 0) spec.set_max_attempts(3);
  if (spec.max_attempts() < 1) return bad("max_attempts", "must be >= 1");
  if (spec.max_failed_trials() < 0)
    return bad("max_failed_trials", "must be >= 0 (0: max(3, n_trials / 10))");
  if (!spec.study_checkpoint_dir().empty()) {
    return bad("study_checkpoint_dir",
               "applies to `schism run` only; a coordinator keeps studies in its --store");
  }
  if (spec.objective().empty()) {
    spec.set_objective(
        spec.has_kl_divergence_scale() || spec.has_kl_divergence_target() ? "heretic-1.4" : "raw");
  }
  if (spec.objective() != "raw" && spec.objective() != "heretic-1.4") {
    return bad("objective", "expected raw or heretic-1.4, got \"" + spec.objective() + "\"");
  }
  if (spec.objective() == "raw" &&
      (spec.has_kl_divergence_scale() || spec.has_kl_divergence_target())) {
    return bad("kl_divergence_scale",
               "kl_divergence_scale and kl_divergence_target shape the heretic-1.4 objective; "
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
    if (marker.empty())
      return bad("refusal_markers",
                 "markers must not be empty (an empty marker matches everything)");
  }
  for (const std::string& d : spec.dtypes()) {
    if (d != "auto" && d != "float32" && d != "bfloat16" && d != "float16") {
      return bad("dtypes", "\"" + d + "\": expected auto, float32, bfloat16 or float16");
    }
  }
  if (spec.has_judge()) {
    v1::JudgeScorer& judge = *spec.mutable_judge();
    const std::string& url = judge.url();
    if (url.empty()) return bad("judge.url", "is required (the endpoint's base URL)");
    const bool http = url.rfind("http://", 0) == 0, https = url.rfind("https://", 0) == 0;
    if ((!http && !https) || url.size() == (http ? 7u : 8u) || url[http ? 7 : 8] == '/') {
      return bad(
          "judge.url",
          "\"" + url + "\": expected http://host[:port][/path] or https://host[:port][/path]");
    }
    if (judge.timeout_seconds() == 0) judge.set_timeout_seconds(60);
    if (judge.timeout_seconds() < 1 || judge.timeout_seconds() > 3600)
      return bad("judge.timeout_seconds", "must be in [1, 3600]");
  }
  if (spec.has_perplexity()) {
    v1::PerplexityScorer& perplexity = *spec.mutable_perplexity();
    if (perplexity.texts().path().empty())
      return bad("perplexity.texts", "is required (a held-out text file or dataset folder)");
    if (perplexity.texts().has_system_prompt())
      return bad("perplexity.texts.system_prompt",
                 "perplexity texts are plain text, without a chat template or system prompt");
    if (perplexity.max_tokens() == 0) perplexity.set_max_tokens(128);
    if (perplexity.max_tokens() < 2 || perplexity.max_tokens() > 8192)
      return bad("perplexity.max_tokens", "must be in [2, 8192]");
  }
  if (spec.ByteSizeLong() > kMaxStudySpecBytes) {
    return bad("spec",
               absl::StrCat(spec.ByteSizeLong(), " bytes, more than ", kMaxStudySpecBytes,
                            ": long texts (system prompt, markers, prefix) must stay small"));
  }
  if (spec.batch_size() == 0) spec.set_batch_size(32);
  if (spec.batch_size() < 1) return bad("batch_size", "must be >= 1");
  return spec;
}

}  // namespace schism::coordinator
