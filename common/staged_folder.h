// Where exports may write, and how they write without leaving debris.
//
// An export worker serves requests from the network, so every destination must stay inside the
// operator's output root: ResolveExportDestination rejects "..", absolute paths elsewhere and
// symlinks that lead out. A StagedFolder is written under a hidden temporary name next to the
// destination and renamed into place by Commit; dropped without Commit (an error, an exception,
// a kill between the two renames excepted) it deletes what it wrote, so a failed export never
// leaves a half-written model where a user would load it. A staging folder left by a process that
// was killed outright is removed by the next export to the same destination.
#ifndef SCHISM_COMMON_STAGED_FOLDER_H_
#define SCHISM_COMMON_STAGED_FOLDER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace schism::common {

// `dest` relative to `root`, or absolute; the result is absolute and normalized. The root must
// exist. PERMISSION_DENIED names both paths when dest resolves outside root (or to root itself).
absl::StatusOr<std::string> ResolveExportDestination(const std::string& root,
                                                     const std::string& dest);

class StagedFolder {
 public:
  // An existing non-empty `dest` is ALREADY_EXISTS unless `overwrite`; with it, Commit replaces
  // the old folder only once the new one is complete.
  static absl::StatusOr<std::unique_ptr<StagedFolder>> Create(const std::string& dest,
                                                              bool overwrite);
  ~StagedFolder();
  StagedFolder(const StagedFolder&) = delete;
  StagedFolder& operator=(const StagedFolder&) = delete;

  // Where to write until Commit.
  const std::string& path() const { return staging_; }
  const std::string& destination() const { return dest_; }
  // Renames the staging folder to the destination.
  absl::Status Commit();

 private:
  StagedFolder(std::string dest, std::string staging)
      : dest_(std::move(dest)), staging_(std::move(staging)) {}
  std::string dest_, staging_;
  bool committed_ = false;
};

}  // namespace schism::common

#endif  // SCHISM_COMMON_STAGED_FOLDER_H_
