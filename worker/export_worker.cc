#include "worker/export_worker.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>

#include "schism/proto_json.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/staged_folder.h"
#include "common/text_file.h"
#include "worker/export_job.h"

namespace schism::worker {
namespace {

namespace fs = std::filesystem;

// Errors that another attempt cannot fix.
bool IsPermanent(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kUnimplemented:
    case absl::StatusCode::kFailedPrecondition:
      return true;
    default:
      return false;
  }
}

// The export request of a work item, with the study's directions written to `directions_path`.
absl::StatusOr<ExportRequest> RequestFor(const v1::WorkItem& item, const std::string& destination,
                                         const std::string& directions_path) {
  const v1::ExportWork& work = item.export_trial();
  const v1::RequestExportRequest& r = work.job().request();
  ExportRequest request;
  request.source_model = r.source_model().empty() ? item.spec().model() : r.source_model();
  request.directions_path = directions_path;
  request.directions_origin = absl::StrCat("study ", item.study_id(), " artifact");
  request.params_json = TrialParamsJson(work.trial());
  request.format = r.format().empty() ? "merged" : r.format();
  if (!r.dtype().empty()) {
    auto dtype = model::ParseExportDtype(r.dtype());
    if (!dtype.ok()) return dtype.status();
    request.merge.dtype = *dtype;
  }
  if (r.max_shard_bytes() > 0) request.merge.max_shard_bytes = r.max_shard_bytes();
  auto mode = model::ParseRowNormalization(
      item.spec().row_normalization().empty() ? "full" : item.spec().row_normalization());
  if (!mode.ok()) return mode.status();
  request.merge.row_normalization = *mode;
  request.destination = destination;
  request.overwrite = r.overwrite();
  request.study_id = item.study_id();
  request.study_spec_json = ProtoJson(item.spec());
  request.trial_number = work.trial().number();
  request.scores =
      ExportScores{work.trial().scores().refusals(), work.trial().scores().refusal_prompts(),
                   work.trial().scores().kl_divergence(), work.baseline_refusals()};
  SetOtherScores(work.trial().scores(), work.baseline(), &*request.scores);
  return request;
}

v1::ReportResultRequest ExportReport(const std::string& destination,
                                     const std::vector<ExportedFile>& files) {
  v1::ReportResultRequest report;
  report.set_export_destination(destination);
  for (const ExportedFile& f : files) {
    v1::ExportedFile* out = report.add_export_files();
    out->set_path(f.path);
    out->set_bytes(f.bytes);
    out->set_sha256(f.sha256);
  }
  return report;
}

constexpr char kDirectionsPrefix[] = ".directions-";

// The study's directions for the length of one export, under an exclusive flock that tells
// RemoveStaleDirections the export is alive; the file goes when this does.
class DirectionsFile {
 public:
  explicit DirectionsFile(std::string path) : path_(std::move(path)) {}
  ~DirectionsFile() {
    std::error_code ec;
    if (fd_ >= 0) {
      fs::remove(path_, ec);
      ::close(fd_);
    }
  }
  absl::Status Write(const std::string& bytes) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd_ < 0 || ::flock(fd_, LOCK_EX) != 0)
      return absl::PermissionDeniedError(absl::StrCat(path_, ": cannot create"));
    for (size_t done = 0; done < bytes.size();) {
      const ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
      if (n <= 0) return absl::DataLossError(absl::StrCat(path_, ": write failed"));
      done += static_cast<size_t>(n);
    }
    return absl::OkStatus();
  }

 private:
  std::string path_;
  int fd_ = -1;
};

std::string HostName() {
  char host[256] = {};
  if (::gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') return "localhost";
  return host;
}

}  // namespace

int RemoveStaleDirections(const std::string& output_root) {
  int removed = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(output_root, ec)) {
    const std::string name = entry.path().filename().string();
    if (!absl::StartsWith(name, kDirectionsPrefix) || !absl::EndsWith(name, ".bin")) continue;
    // A live export holds an exclusive flock on its file (whatever its host or pid namespace);
    // one nobody holds belongs to an export that died.
    const int fd = ::open(entry.path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0 && fs::remove(entry.path(), ec)) ++removed;
    ::close(fd);
  }
  return removed;
}

absl::Status RunExportWorker(ExportWorkerOptions options) {
  std::error_code ec;
  if (!fs::is_directory(options.output_root, ec)) {
    return absl::FailedPreconditionError(
        absl::StrCat("--output-root ", options.output_root, " is not a directory"));
  }
  if (const int removed = RemoveStaleDirections(options.output_root); removed > 0) {
    std::fprintf(stderr,
                 "schism export-worker: removed %d directions file(s) of killed exports from %s\n",
                 removed, options.output_root.c_str());
  }
  options.link.role = v1::WORKER_ROLE_EXPORT;
  CoordinatorLink link(options.link);
  while (true) {
    auto next = link.Next(1, "", options.exit_after_idle_polls);
    if (!next.ok()) return next.status();
    if (!next->has_value()) break;
    const v1::WorkItem item = std::move(**next);
    if (!item.has_export_trial()) {
      link.Fail(item, "an export worker was handed work that is not an export");
      continue;
    }
    auto heartbeat = link.StartHeartbeat(item);
    const v1::ExportJob& job = item.export_trial().job();
    auto destination = common::ResolveExportDestination(options.output_root, job.request().dest());
    if (!destination.ok()) {
      link.Fail(item, std::string(destination.status().message()), /*permanent=*/true);
      continue;
    }
    const v1::RequestExportRequest& asked = job.request();
    if (!asked.overwrite()) {
      auto finished =
          FindFinishedExport(*destination, item.study_id(), item.export_trial().trial().number(),
                             asked.format().empty() ? "merged" : asked.format());
      if (finished.ok()) {  // an earlier lease of this export finished after all
        if (!heartbeat->lost()) (void)link.Report(item, ExportReport(*destination, *finished));
        continue;
      }
    }
    auto artifact = link.FetchArtifact(item.study_id());
    if (!artifact.ok()) {
      link.Fail(item, std::string(artifact.status().message()));
      continue;
    }
    // The directions live next to the root for the length of the export, out of every destination.
    const std::string directions_path =
        (fs::path(options.output_root) /
         absl::StrCat(kDirectionsPrefix, job.export_id(), "-", HostName(), "-", ::getpid(), ".bin"))
            .string();
    auto request = RequestFor(item, *destination, directions_path);
    DirectionsFile held(directions_path);
    absl::Status written = held.Write(*artifact);
    absl::StatusOr<ExportResult> result = !written.ok()  ? written
                                          : request.ok() ? RunExport(*request)
                                                         : request.status();
    if (!result.ok()) {
      link.Fail(item, std::string(result.status().message()), IsPermanent(result.status()));
      continue;
    }
    std::fprintf(stderr, "schism export-worker: %s: trial %lld of study %s -> %s (%.1f s)\n",
                 job.export_id().c_str(),
                 static_cast<long long>(item.export_trial().trial().number()),
                 item.study_id().c_str(), result->destination.c_str(), result->seconds);
    if (heartbeat->lost()) continue;
    (void)link.Report(item, ExportReport(result->destination, result->files));
  }
  return absl::OkStatus();
}

}  // namespace schism::worker
