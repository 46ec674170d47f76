#include "cli/commands.h"

#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include "schism/proto_json.h"

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cli/args.h"
#include "cli/reproduction.h"
#include "common/byte_size.h"
#include "common/staged_folder.h"
#include "coordinator/study_folder.h"
#include "worker/coordinator_link.h"
#include "worker/export_job.h"
#include "worker/runtime/directions.h"

namespace schism::cli {
namespace {

namespace fs = std::filesystem;

int Fail(int code, const std::string& message) { return cli::Fail("export", code, message); }

int ExitCodeFor(const absl::Status& s) {
  return s.code() == absl::StatusCode::kInvalidArgument ||
                 s.code() == absl::StatusCode::kAlreadyExists ||
                 s.code() == absl::StatusCode::kPermissionDenied
             ? kExitUsageError
             : kExitRuntimeError;
}

std::string ReadFile(const std::string& path, bool* ok) {
  std::ifstream in(path, std::ios::binary);
  *ok = static_cast<bool>(in);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void PrintResult(const worker::ExportResult& result, bool json) {
  if (json) {
    nlohmann::json files = nlohmann::json::array();
    for (const auto& f : result.files)
      files.push_back({{"path", f.path}, {"bytes", f.bytes}, {"sha256", f.sha256}});
    std::printf("%s\n", nlohmann::json{{"destination", result.destination},
                                       {"files", files},
                                       {"adapted_tensors", result.stats.adapted},
                                       {"seconds", result.seconds}}
                            .dump(2)
                            .c_str());
    return;
  }
  uint64_t bytes = 0;
  for (const auto& f : result.files) bytes += f.bytes;
  std::printf("exported to %s: %zu files, %.1f MB, %d weights adapted, %.1f s\n",
              result.destination.c_str(), result.files.size(), bytes / 1e6, result.stats.adapted,
              result.seconds);
}

}  // namespace

int RunExport(const Args& args) {
  auto dest = args.Get("dest");  // required
  worker::ExportRequest request;
  request.source_model = args.Get("model").value_or("");
  if (request.source_model.empty() && !args.Has("study") && !args.Has("reproduce")) {
    return UsageError(args, "--model is required without --study or --reproduce");
  }
  request.overwrite = args.Has("overwrite");
  // Flags win; a study's config (max_shard_size, [export]) fills what they leave out.
  std::string format = args.Get("format").value_or("");
  std::string dtype = args.Get("dtype").value_or("");
  if (auto size = args.Get("max-shard-size")) {
    auto parsed = common::ParseByteSize(*size);
    if (!parsed.ok())
      return Fail(kExitUsageError, "--max-shard-size: " + std::string(parsed.status().message()));
    request.merge.max_shard_bytes = *parsed;
  }
  std::string row_normalization = args.Get("row-normalization").value_or("");

  // A reproduce.json's directions are computed here first; the file is removed when done.
  std::string reproduced_directions;
  struct RemoveOnExit {
    std::string* path;
    ~RemoveOnExit() {
      if (!path->empty()) fs::remove(*path);
    }
  } remove_directions{&reproduced_directions};
  std::optional<common::HereticReproduction> reproduced;
  if (auto file = args.Get("reproduce")) {
    for (const char* flag : {"study", "trial", "params", "directions", "row-normalization"}) {
      if (args.Has(flag)) {
        return UsageError(args, absl::StrCat("--", flag, " does not apply with --reproduce"));
      }
    }
    auto r = LoadReproduction(*file, args.Get("model"));
    if (!r.ok()) return Fail(kExitUsageError, std::string(r.status().message()));
    worker::TrialWorker worker(worker::WorkerOptions{});
    auto prepared = PrepareReproduction(worker, &*r);
    if (!prepared.ok()) return Fail(kExitRuntimeError, std::string(prepared.status().message()));
    auto directions = model::ParseDirections(prepared->artifact(), "directions");
    if (!directions.ok())
      return Fail(kExitRuntimeError, std::string(directions.status().message()));
    reproduced_directions = (fs::temp_directory_path() /
                             ("schism-reproduce-" + std::to_string(::getpid()) + ".directions"))
                                .string();
    if (auto s = model::SaveDirections(reproduced_directions, *directions); !s.ok()) {
      return Fail(kExitRuntimeError, std::string(s.message()));
    }
    const v1::StudySpec& spec = r->spec;
    request.source_model = spec.model();
    request.params_json = worker::TrialParamsJson(r->trial);
    request.directions_path = reproduced_directions;
    request.study_spec_json = ProtoJson(spec);
    if (const auto& m = r->source.metrics) {  // what Heretic measured for this trial
      request.scores =
          worker::ExportScores{static_cast<int>(m->refusals), static_cast<int>(m->n_bad_prompts),
                               m->kl_divergence, static_cast<int>(m->base_refusals)};
    }
    row_normalization = spec.row_normalization();
    if (format.empty()) format = spec.export_format();
    if (!args.Has("max-shard-size") && spec.max_shard_bytes() > 0) {
      request.merge.max_shard_bytes = spec.max_shard_bytes();
    }
    reproduced = r->source;
  } else if (auto study_dir = args.Get("study")) {
    auto trial_number = args.GetInt("trial");
    if (!trial_number.ok())
      return Fail(kExitUsageError, std::string(trial_number.status().message()));
    if (!*trial_number) return Fail(kExitUsageError, "--study needs --trial N");
    if (args.Has("params") || args.Has("directions")) {
      return Fail(kExitUsageError, "give either --study and --trial, or --params and --directions");
    }
    auto study = coordinator::ReadStudyFolder(*study_dir);
    if (!study.ok()) return Fail(kExitRuntimeError, std::string(study.status().message()));
    const v1::Trial* trial = nullptr;
    for (const v1::Trial& t : study->trials()) {
      if (t.number() == **trial_number) trial = &t;
    }
    if (trial == nullptr || trial->state() != v1::TRIAL_STATE_COMPLETE) {
      return Fail(kExitUsageError, absl::StrCat("study ", study->summary().study_id(),
                                                " has no completed trial ", **trial_number));
    }
    request.params_json = worker::TrialParamsJson(*trial);
    request.directions_path = coordinator::StudyDirectionsPath(*study_dir);
    request.study_id = study->summary().study_id();
    request.study_spec_json = ProtoJson(study->summary().spec());
    request.trial_number = trial->number();
    request.scores =
        worker::ExportScores{trial->scores().refusals(), trial->scores().refusal_prompts(),
                             trial->scores().kl_divergence(), study->summary().baseline_refusals()};
    worker::SetOtherScores(trial->scores(), study->summary().baseline(), &*request.scores);
    const v1::StudySpec& spec = study->summary().spec();
    if (request.source_model.empty()) request.source_model = spec.model();  // the study's own model
    if (row_normalization.empty()) row_normalization = spec.row_normalization();
    if (format.empty()) format = spec.export_format();
    if (dtype.empty()) dtype = spec.export_dtype();
    if (!args.Has("max-shard-size") && spec.max_shard_bytes() > 0)
      request.merge.max_shard_bytes = spec.max_shard_bytes();
  } else {
    auto params_path = args.Get("params");
    auto directions_path = args.Get("directions");
    if (!params_path || !directions_path) {
      return Fail(kExitUsageError,
                  "give --study DIR --trial N, or --params TRIAL.json --directions FILE");
    }
    bool ok = false;
    request.params_json = ReadFile(*params_path, &ok);
    if (!ok) return Fail(kExitUsageError, "cannot read " + *params_path);
    request.directions_path = *directions_path;
  }
  request.format = format.empty() ? "merged" : format;
  if (auto s = worker::ValidateExportFormat(request.format); !s.ok())
    return Fail(kExitUsageError, std::string(s.message()));
  if (!dtype.empty()) {
    auto parsed = model::ParseExportDtype(dtype);
    if (!parsed.ok()) return Fail(kExitUsageError, std::string(parsed.status().message()));
    request.merge.dtype = *parsed;
  }
  auto mode = model::ParseRowNormalization(row_normalization.empty() ? "full" : row_normalization);
  if (!mode.ok()) return Fail(kExitUsageError, std::string(mode.status().message()));
  request.merge.row_normalization = *mode;

  if (auto root = args.Get("output-root")) {
    auto resolved = common::ResolveExportDestination(*root, *dest);
    if (!resolved.ok())
      return Fail(ExitCodeFor(resolved.status()), std::string(resolved.status().message()));
    request.destination = *resolved;
  } else {
    request.destination = fs::absolute(*dest).lexically_normal().string();
  }
  auto result = worker::RunExport(request);
  if (!result.ok())
    return Fail(ExitCodeFor(result.status()), std::string(result.status().message()));
  PrintResult(*result, args.Has("json"));
  if (reproduced && !reproduced->hashes.empty()) {
    // Informative: schism merges exactly, so its bytes equal Heretic's only where Heretic's
    // merge was exact too.
    int same = 0;
    for (const auto& f : result->files) {
      auto it = reproduced->hashes.find(f.path);
      same += it != reproduced->hashes.end() && it->second == f.sha256;
    }
    std::fprintf(stderr, "%d of %zu files Heretic uploaded have the same SHA-256 here\n", same,
                 reproduced->hashes.size());
  }
  return kExitOk;
}

}  // namespace schism::cli
