// The export worker (docs/architecture.md#export-worker): a process with plenty of RAM and no GPU
// that takes Export work from the coordinator, writes the trial's model under its output root with
// RunExport and reports every file with its SHA-256. Destinations that resolve outside the root,
// existing non-empty destinations without overwrite, and sources it cannot read fail permanently
// (no retry); anything else is re-queued by the coordinator up to max_attempts.
#ifndef SCHISM_WORKER_EXPORT_WORKER_H_
#define SCHISM_WORKER_EXPORT_WORKER_H_

#include <string>

#include "absl/status/status.h"
#include "worker/coordinator_link.h"

namespace schism::worker {

struct ExportWorkerOptions {
  LinkOptions link;               // role is set to EXPORT
  std::string output_root;        // every export lands below this folder
  int exit_after_idle_polls = 0;  // 0 = serve until stopped
};

// Serves until *link.stop is set (finishing the current export) or the idle limit is reached.
// Starts by removing what exports killed mid-way left in the root (RemoveStaleDirections).
absl::Status RunExportWorker(ExportWorkerOptions options);

// During an export the study's directions sit in `<root>/.directions-<export>-<host>-<pid>.bin`
// under an exclusive flock. A SIGKILLed worker leaves the file behind, unlocked; this removes
// every such file nobody holds (a live export on another host or in another container keeps
// its lock, which pids could not tell). Returns how many were removed.
int RemoveStaleDirections(const std::string& output_root);

}  // namespace schism::worker

#endif  // SCHISM_WORKER_EXPORT_WORKER_H_
