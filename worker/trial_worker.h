// A trial worker (docs/architecture.md): registers with the coordinator, long-polls for work,
// computes a study's directions and baseline (Prepare) or evaluates leased trials k at a time
// (Evaluate), heartbeats from a separate thread while it computes, reports, and reconnects with
// backoff when the coordinator is away. Setting *stop makes it finish the current lease and
// return.
//
// Run is a short loop over named steps, each usable (and tested) without a coordinator:
//   next item -> LoadModel -> Prepare | Evaluate -> report (or fail the item with the reason)
#ifndef SCHISM_WORKER_TRIAL_WORKER_H_
#define SCHISM_WORKER_TRIAL_WORKER_H_

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/coordinator_link.h"
#include "worker/runtime/tensor_parallel.h"

namespace schism::worker {

struct WorkerOptions {
  LinkOptions link;          // coordinator, token, TLS, long-poll length, stop flag
  int trials_per_batch = 1;  // k
  int threads = 0;           // libtorch threads; 0 = default
  c10::Device device = c10::Device(c10::kCPU);  // where the model and every activation live
  // Compute dtype (--dtype); unset: the study's `dtypes`, else the device's default (float32 on
  // the CPU, bfloat16 on CUDA).
  std::optional<c10::ScalarType> dtype;
  // Exit after this many consecutive empty polls (0 = never); `schism run` uses it to end
  // workers once the study is done.
  int exit_after_idle_polls = 0;
  // This worker is one rank of a tensor-parallel group (already connected), each rank holding
  // its shard of the model on its own device. Rank 0 talks to the coordinator and hands every
  // step to the other ranks, which run it beside it (Run follows rank 0 there); only rank 0
  // reports. Null: the whole model in this process.
  std::shared_ptr<model::TensorParallel> tensor_parallel;
};

class TrialWorker {
 public:
  // Where Evaluate gets a study's artifact (its refusal directions) when it has none yet.
  using ArtifactSource = std::function<absl::StatusOr<std::string>(const std::string& study_id)>;

  explicit TrialWorker(WorkerOptions options);
  ~TrialWorker();
  TrialWorker(const TrialWorker&) = delete;
  TrialWorker& operator=(const TrialWorker&) = delete;

  // Serves the coordinator until stopped, idle past exit_after_idle_polls, or refused for good.
  // A tensor-parallel rank other than 0 follows rank 0 instead, until rank 0 ends (or is lost).
  absl::Status Run();

  // Step 0 (a peek's answer, before anything is leased): what the study's next work needs,
  // built now so that the lease is served at once: the model, and for a running study its
  // evaluator (directions from `artifacts`). An error here belongs to no lease; the lease that
  // follows meets it again when served and reports it.
  absl::Status Ready(const v1::WorkItem& peeked, const ArtifactSource& artifacts);
  // Step 1: the study's model, loaded once per (path, quantization, dtypes) and kept across
  // items; the worker's --dtype, else the study's dtypes in order (the next when loading in one
  // fails), else the device's default. A new model drops the evaluator.
  absl::Status LoadModel(const v1::StudySpec& spec);
  // Step 2a (a prepare item): the response prefix (when the spec has none), the refusal
  // directions and the baseline refusals; keeps the evaluator for the study's trials.
  absl::StatusOr<v1::ReportResultRequest> Prepare(const v1::WorkItem& item);
  // Step 2b (an evaluate item): the leased trials' scores, one result per trial in lease order;
  // builds the study's evaluator first (directions from `artifacts`) when it has none.
  absl::StatusOr<v1::ReportResultRequest> Evaluate(const v1::WorkItem& item,
                                                   const ArtifactSource& artifacts);
  // Steps 1 and 2 for any item; a library exception is an error with its message.
  absl::StatusOr<v1::ReportResultRequest> Serve(const v1::WorkItem& item,
                                                const ArtifactSource& artifacts);

  // The other scorers' work that needs no model (the judge's requests) for the report Prepare or
  // Evaluate just built. They call it themselves without tensor parallelism; with it, Run calls
  // it on rank 0 once every rank has finished the step, so that no collective waits on an
  // endpoint.
  void Conclude(v1::ReportResultRequest* report);

  // "path|quantization|dtypes" of the loaded model; empty before the first LoadModel.
  const std::string& loaded_model_key() const;
  // The compute dtype the model was loaded in (the first of the spec's dtypes that loads, or the
  // worker's --dtype); undefined before the first LoadModel.
  std::optional<c10::ScalarType> loaded_dtype() const;

 private:
  // Ranks > 0 of a tensor-parallel group: every step rank 0 announces, with its artifacts.
  absl::Status Follow();

  // The study's evaluator, built from its artifact unless already held.
  absl::Status EnsureEvaluator(const std::string& study_id, const v1::StudySpec& spec,
                               const ArtifactSource& artifacts);

  struct State;
  WorkerOptions options_;
  std::unique_ptr<State> state_;
};

}  // namespace schism::worker

#endif  // SCHISM_WORKER_TRIAL_WORKER_H_
