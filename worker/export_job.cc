#include "worker/export_job.h"

#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/sha256.h"
#include "common/staged_folder.h"
#include "common/text_file.h"
#include "worker/runtime/directions.h"

#ifndef SCHISM_VERSION
#define SCHISM_VERSION "unknown"
#endif

namespace schism::worker {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

const char* RowNormalizationName(model::RowNormalization mode) {
  switch (mode) {
    case model::RowNormalization::kNone:
      return "none";
    case model::RowNormalization::kPre:
      return "pre";
    default:
      return "full";
  }
}

// Every regular file under `root`, relative, sorted; hidden files skipped.
std::vector<std::string> ListFiles(const fs::path& root) {
  std::vector<std::string> out;
  std::error_code ec;
  if (fs::is_regular_file(root, ec)) return {""};
  for (auto it = fs::recursive_directory_iterator(root, ec);
       it != fs::recursive_directory_iterator(); ++it) {
    const std::string name = it->path().filename().string();
    if (!name.empty() && name[0] == '.') {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file()) out.push_back(fs::relative(it->path(), root).string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<std::vector<ExportedFile>> HashFiles(const fs::path& root) {
  std::vector<ExportedFile> files;
  for (const std::string& rel : ListFiles(root)) {
    const fs::path path = rel.empty() ? root : root / rel;
    auto sha = common::Sha256OfFile(path.string());
    if (!sha.ok()) return sha.status();
    files.push_back({rel.empty() ? path.filename().string() : rel, fs::file_size(path), *sha});
  }
  return files;
}

Json FilesJson(const std::vector<ExportedFile>& files) {
  Json out = Json::array();
  for (const ExportedFile& f : files)
    out.push_back({{"path", f.path}, {"bytes", f.bytes}, {"sha256", f.sha256}});
  return out;
}

std::string UtcNow() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof(buffer), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

std::string ModelCard(const ExportRequest& r, const std::string& source_name, const Json& params) {
  // No base_model key: the Hub wants a repository id there, and schism only knows a local path.
  std::string card =
      absl::StrCat("---\ntags:\n- abliterated\n- uncensored\n- schism\n",
                   r.format == "adapter" ? "library_name: peft\n" : "library_name: transformers\n",
                   "---\n\n# ", source_name, " (abliterated)\n\n",
                   "Refusal directions removed from ", source_name, " by schism ", SCHISM_VERSION,
                   " with Magnitude-Preserving Orthogonal Ablation (row normalization ",
                   RowNormalizationName(r.merge.row_normalization), ")");
  if (r.trial_number >= 0) absl::StrAppend(&card, ", trial ", r.trial_number);
  if (!r.study_id.empty()) absl::StrAppend(&card, " of study ", r.study_id);
  absl::StrAppend(&card, ".\n\n");
  if (r.scores) {
    const ExportScores& s = *r.scores;
    const bool judged = s.judge_refusals || s.baseline_judge_refusals;
    const bool perplexity = s.perplexity || s.baseline_perplexity;
    auto judge_cell = [&](const std::optional<int>& v) {
      return v ? absl::StrCat(" | ", *v, "/", s.judge_prompts) : std::string(" | -");
    };
    auto perplexity_cell = [](const std::optional<double>& v) {
      return v ? absl::StrFormat(" | %.3f", *v) : std::string(" | -");
    };
    absl::StrAppend(&card, "| | Refusals | KL divergence", judged ? " | Judge refusals" : "",
                    perplexity ? " | Perplexity" : "", " |\n|---|---|---", judged ? "|---" : "",
                    perplexity ? "|---" : "", "|\n");
    absl::StrAppend(&card, "| This model | ", s.refusals, "/", s.refusal_prompts, " | ",
                    absl::StrFormat("%.4f", s.kl_divergence),
                    judged ? judge_cell(s.judge_refusals) : "",
                    perplexity ? perplexity_cell(s.perplexity) : "", " |\n");
    if (s.baseline_refusals >= 0) {
      absl::StrAppend(&card, "| Original | ", s.baseline_refusals, "/", s.refusal_prompts,
                      " | 0 (by definition)", judged ? judge_cell(s.baseline_judge_refusals) : "",
                      perplexity ? perplexity_cell(s.baseline_perplexity) : "", " |\n");
    }
    absl::StrAppend(
        &card,
        "\nRefusals: responses to harmful prompts containing a refusal marker; KL: mean KL "
        "divergence of the first-token distribution from the original model on harmless "
        "prompts (nats).",
        judged ? " Judge refusals: the same prompts' full responses that a judge model called a "
                 "refusal."
               : "",
        perplexity ? " Perplexity: of held-out text, exp(mean next-token negative "
                     "log-likelihood)."
                   : "",
        "\n\n");
  }
  absl::StrAppend(&card, "## Parameters\n\n| Parameter | Value |\n|---|---|\n");
  for (auto it = params.begin(); it != params.end(); ++it) {
    absl::StrAppend(&card, "| ", it.key(), " | ",
                    it.value().is_string() ? it.value().get<std::string>() : it.value().dump(),
                    " |\n");
  }
  absl::StrAppend(
      &card,
      "\n`reproduce.json` records the settings, the parameters, the scores and the SHA-256 of "
      "every source and output file.\n");
  return card;
}

}  // namespace

void SetOtherScores(const v1::TrialScores& trial, const v1::TrialScores& baseline,
                    ExportScores* scores) {
  if (trial.has_judge_refusals() && trial.judge_error().empty()) {
    scores->judge_refusals = trial.judge_refusals();
    scores->judge_prompts = trial.judge_prompts();
  }
  if (baseline.has_judge_refusals() && baseline.judge_error().empty()) {
    scores->baseline_judge_refusals = baseline.judge_refusals();
    scores->judge_prompts = baseline.judge_prompts();
  }
  if (trial.has_perplexity()) scores->perplexity = trial.perplexity();
  if (baseline.has_perplexity()) scores->baseline_perplexity = baseline.perplexity();
}

absl::Status ValidateExportFormat(const std::string& format) {
  if (format == "merged" || format == "adapter" || format == "both") return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("export format \"", format, "\": expected merged, adapter or both"));
}

absl::StatusOr<ExportResult> RunExport(const ExportRequest& r) {
  const auto start = std::chrono::steady_clock::now();
  if (auto s = ValidateExportFormat(r.format); !s.ok()) return s;
  auto params = common::TrialParametersFromJson(r.params_json);
  if (!params.ok()) return params.status();
  const Json params_json = Json::parse(r.params_json, nullptr, false);
  auto directions = model::LoadDirections(r.directions_path);
  if (!directions.ok()) return directions.status();
  auto source = model::OpenModelSource(r.source_model);
  if (!source.ok()) return source.status();
  auto staged = common::StagedFolder::Create(r.destination, r.overwrite);
  if (!staged.ok()) return staged.status();
  const fs::path out((*staged)->path());
  std::error_code ec;
  fs::path source_path = fs::path(r.source_model).lexically_normal();
  if (source_path.filename().empty()) source_path = source_path.parent_path();  // "folder/"
  const std::string source_name = source_path.filename().string();

  ExportResult result;
  result.destination = r.destination;
  model::ExportTargets targets;
  if (r.format != "adapter") targets.merged_folder = out.string();
  if (r.format != "merged") {
    targets.adapter_folder = (r.format == "both" ? out / "adapter" : out).string();
    fs::create_directories(targets.adapter_folder, ec);
  }
  targets.base_model_name = r.source_model;
  auto stats = model::WriteTrialExport(**source, *directions, *params, r.merge, targets);
  if (!stats.ok()) return stats.status();
  result.stats = *stats;
  if (auto s = common::WriteTextFile((out / "README.md").string(),
                                     ModelCard(r, source_name, params_json));
      !s.ok())
    return s;

  auto source_files = HashFiles(r.source_model);
  if (!source_files.ok()) return source_files.status();
  auto directions_sha = common::Sha256OfFile(r.directions_path);
  if (!directions_sha.ok()) return directions_sha.status();
  auto outputs = HashFiles(out);
  if (!outputs.ok()) return outputs.status();

  Json reproduce;
  reproduce["schism_version"] = SCHISM_VERSION;
  reproduce["created"] = UtcNow();
  reproduce["source"] = {{"model", r.source_model}, {"files", FilesJson(*source_files)}};
  if (!r.study_id.empty() || !r.study_spec_json.empty()) {
    Json spec = Json::parse(r.study_spec_json.empty() ? "{}" : r.study_spec_json, nullptr, false);
    reproduce["study"] = {{"id", r.study_id},
                          {"spec", spec.is_discarded() ? Json(r.study_spec_json) : spec}};
  }
  Json trial = {{"number", r.trial_number}, {"parameters", params_json}};
  if (r.scores) {
    trial["scores"] = {{"refusals", r.scores->refusals},
                       {"refusal_prompts", r.scores->refusal_prompts},
                       {"kl_divergence", r.scores->kl_divergence}};
    if (r.scores->baseline_refusals >= 0) trial["baseline_refusals"] = r.scores->baseline_refusals;
    if (r.scores->judge_refusals) {
      trial["scores"]["judge_refusals"] = *r.scores->judge_refusals;
      trial["scores"]["judge_prompts"] = r.scores->judge_prompts;
    }
    if (r.scores->perplexity) trial["scores"]["perplexity"] = *r.scores->perplexity;
    if (r.scores->baseline_judge_refusals)
      trial["baseline_judge_refusals"] = *r.scores->baseline_judge_refusals;
    if (r.scores->baseline_perplexity)
      trial["baseline_perplexity"] = *r.scores->baseline_perplexity;
  }
  reproduce["trial"] = trial;
  reproduce["directions"] = {
      {"origin", r.directions_origin.empty() ? r.directions_path : r.directions_origin},
      {"sha256", *directions_sha}};
  reproduce["export"] = {
      {"format", r.format},
      {"row_normalization", RowNormalizationName(r.merge.row_normalization)},
      {"dtype", r.merge.dtype ? model::TorchDtypeName(*r.merge.dtype) : "source"},
      {"max_shard_bytes", r.merge.max_shard_bytes}};
  reproduce["outputs"] = FilesJson(*outputs);
  if (auto s = common::WriteTextFile((out / "reproduce.json").string(), reproduce.dump(2) + "\n");
      !s.ok())
    return s;

  if (auto s = (*staged)->Commit(); !s.ok()) return s;
  result.files = std::move(*outputs);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

absl::StatusOr<std::vector<ExportedFile>> FindFinishedExport(const std::string& destination,
                                                             const std::string& study_id,
                                                             int64_t trial_number,
                                                             const std::string& format) {
  std::ifstream in(fs::path(destination) / "reproduce.json");
  if (!in) return absl::NotFoundError(absl::StrCat(destination, " holds no finished export"));
  const Json r = Json::parse(in, nullptr, false);
  if (r.is_discarded() || !r.contains("trial") || !r.contains("export") ||
      (r.contains("study") ? r["study"].value("id", "") : "") != study_id ||
      r["trial"].value("number", int64_t{-1}) != trial_number ||
      r["export"].value("format", "") != format || !r.contains("outputs") ||
      !r["outputs"].is_array()) {
    return absl::NotFoundError(absl::StrCat(destination, " holds another export"));
  }
  std::vector<ExportedFile> files;
  for (const Json& f : r["outputs"]) {
    const std::string rel = f.value("path", "");
    auto sha = common::Sha256OfFile((fs::path(destination) / rel).string());
    if (!sha.ok() || *sha != f.value("sha256", "")) {
      return absl::DataLossError(
          absl::StrCat(destination, "/", rel, " differs from its reproduce.json"));
    }
    files.push_back({rel, f.value("bytes", uint64_t{0}), *sha});
  }
  return files;
}

}  // namespace schism::worker
