#include "common/staged_folder.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include <filesystem>
#include <random>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace schism::common {
namespace fs = std::filesystem;

absl::StatusOr<std::string> ResolveExportDestination(const std::string& root,
                                                     const std::string& dest) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    return absl::FailedPreconditionError(absl::StrCat("output root ", root, " is not a directory"));
  }
  if (dest.empty()) return absl::InvalidArgumentError("export destination is empty");
  const fs::path root_path = fs::canonical(root, ec);
  if (ec)
    return absl::FailedPreconditionError(absl::StrCat("output root ", root, ": ", ec.message()));
  fs::path dest_path = fs::path(dest).is_absolute() ? fs::path(dest) : root_path / dest;
  // Resolves symlinks along the existing part of the path and ".." everywhere.
  dest_path = fs::weakly_canonical(dest_path, ec);
  if (ec)
    return absl::InvalidArgumentError(
        absl::StrCat("export destination ", dest, ": ", ec.message()));
  const std::string r = root_path.string(), d = dest_path.lexically_normal().string();
  if (!absl::StartsWith(d, r + "/") || d.size() <= r.size() + 1) {
    return absl::PermissionDeniedError(absl::StrCat("export destination ", dest, " resolves to ", d,
                                                    ", outside the output root ", r));
  }
  return absl::StrCat(absl::StripSuffix(d, "/"));
}

absl::StatusOr<std::unique_ptr<StagedFolder>> StagedFolder::Create(const std::string& dest,
                                                                   bool overwrite) {
  std::error_code ec;
  const fs::path d(dest);
  if (fs::exists(d, ec)) {
    if (!fs::is_directory(d, ec)) {
      return absl::AlreadyExistsError(absl::StrCat(dest, " exists and is not a folder"));
    }
    if (!fs::is_empty(d, ec) && !overwrite) {
      return absl::AlreadyExistsError(
          absl::StrCat(dest, " exists and is not empty (pass --overwrite to replace it)"));
    }
  }
  fs::create_directories(d.parent_path(), ec);
  if (ec)
    return absl::PermissionDeniedError(absl::StrCat(d.parent_path().string(), ": ", ec.message()));
  // Staging folders of exports to this destination whose process died (SIGKILL, power loss).
  const std::string prefix = absl::StrCat(".", d.filename().string(), ".partial-");
  for (const fs::directory_entry& entry : fs::directory_iterator(d.parent_path(), ec)) {
    const std::string name = entry.path().filename().string();
    int pid = 0;
    if (!absl::StartsWith(name, prefix) ||
        !absl::SimpleAtoi(name.substr(prefix.size(), name.find('-', prefix.size()) - prefix.size()),
                          &pid)) {
      continue;
    }
    if (pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH) fs::remove_all(entry.path(), ec);
  }
  std::random_device random;
  const std::string staging =
      (d.parent_path() /
       absl::StrCat(".", d.filename().string(), ".partial-", ::getpid(), "-", random() % 1000000))
          .string();
  fs::create_directory(staging, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(staging, ": ", ec.message()));
  return std::unique_ptr<StagedFolder>(new StagedFolder(dest, staging));
}

StagedFolder::~StagedFolder() {
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(staging_, ec);
}

absl::Status StagedFolder::Commit() {
  std::error_code ec;
  std::string old;
  if (fs::exists(dest_, ec)) {
    old = absl::StrCat(staging_, ".old");
    fs::rename(dest_, old, ec);
    if (ec)
      return absl::InternalError(absl::StrCat("moving the old ", dest_, " aside: ", ec.message()));
  }
  fs::rename(staging_, dest_, ec);
  if (ec) {
    if (!old.empty()) fs::rename(old, dest_, ec);
    return absl::InternalError(
        absl::StrCat("renaming ", staging_, " to ", dest_, ": ", ec.message()));
  }
  committed_ = true;
  if (!old.empty()) fs::remove_all(old, ec);
  return absl::OkStatus();
}

}  // namespace schism::common
