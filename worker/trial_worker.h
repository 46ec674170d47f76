// A trial worker (DESIGN.md §4): registers with the coordinator, long-polls for work, computes a
// study's directions and baseline (Prepare) or evaluates leased trials k at a time (Evaluate),
// heartbeats from a separate thread while it computes, reports, and reconnects with backoff
// when the coordinator is away. Setting *stop makes it finish the current lease and return.
#ifndef SCHISM_WORKER_TRIAL_WORKER_H_
#define SCHISM_WORKER_TRIAL_WORKER_H_

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <atomic>
#include <memory>
#include <string>

#include <optional>

#include "absl/status/status.h"
#include "worker/coordinator_link.h"

namespace schism::worker {

struct WorkerOptions {
  LinkOptions link;             // coordinator, token, TLS, long-poll length, stop flag
  int trials_per_batch = 1;     // k
  int threads = 0;              // libtorch threads; 0 = default
  c10::Device device = c10::Device(c10::kCPU);  // where the model and every activation live
  // Compute dtype (--dtype); unset: the study's `dtypes`, else the device's default (float32 on
  // the CPU, bfloat16 on CUDA).
  std::optional<c10::ScalarType> dtype;
  // Exit after this many consecutive empty polls (0 = never); `schism run` uses it to end
  // workers once the study is done.
  int exit_after_idle_polls = 0;
};

class TrialWorker {
 public:
  explicit TrialWorker(WorkerOptions options);
  ~TrialWorker();
  TrialWorker(const TrialWorker&) = delete;
  TrialWorker& operator=(const TrialWorker&) = delete;

  absl::Status Run();

 private:
  struct State;
  // One work item: loads the model and builds the evaluator when the study changes, then
  // prepares or evaluates and reports (or fails the item with the reason).
  void Serve(const v1::WorkItem& item, CoordinatorLink::Heartbeat& heartbeat);
  WorkerOptions options_;
  std::unique_ptr<State> state_;
};

}  // namespace schism::worker

#endif  // SCHISM_WORKER_TRIAL_WORKER_H_
