// The worker's side of the WorkerService protocol, shared by the trial worker and the export
// worker: registration (again after a coordinator restart), long-polling for work with
// reconnect backoff, heartbeats from a separate thread while the work runs, reports retried
// through coordinator blips (they are idempotent by lease id), failures, and artifact download.
#ifndef SCHISM_WORKER_COORDINATOR_LINK_H_
#define SCHISM_WORKER_COORDINATOR_LINK_H_

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/trial_parameters.h"
#include "schism/v1/coordinator.grpc.pb.h"
#include "worker/reconnect_backoff.h"

namespace grpc {
class ChannelCredentials;
}

namespace schism::worker {

struct LinkOptions {
  std::string coordinator;                                // host:port
  std::string token;                                      // sent as "authorization: Bearer <token>"
  std::shared_ptr<grpc::ChannelCredentials> credentials;  // null: plaintext
  v1::WorkerRole role = v1::WORKER_ROLE_TRIALS;
  std::string device = "cpu";  // what Register reports for a trial worker: "cpu", "cuda:0", ...
  int wait_seconds = 5;        // long-poll length
  const std::atomic<bool>* stop = nullptr;
};

// A trial's parameters as the optimizer names them, from the wire (common/trial_parameters.h
// turns them into TrialParameters), and their JSON form ({"direction_scope": "global", ...}).
common::ParameterValues TrialParameterValues(const v1::Trial& trial);
std::string TrialParamsJson(const v1::Trial& trial);

class CoordinatorLink {
 public:
  explicit CoordinatorLink(LinkOptions options);
  ~CoordinatorLink();

  bool stopping() const { return options_.stop != nullptr && options_.stop->load(); }

  // Waits for the next work item (registering first when needed). Returns nullopt when asked to
  // stop or after `exit_after_idle_polls` consecutive empty polls (0 = never); an error only for
  // what retrying cannot fix (a wrong token). With `peek`, the item only names the study whose
  // work would come next (AcquireWorkRequest.peek): no lease is taken.
  absl::StatusOr<std::optional<v1::WorkItem>> Next(int capacity, const std::string& loaded_model,
                                                   int exit_after_idle_polls, bool peek = false);

  // Heartbeats `item`'s lease every lease_seconds/3 until destroyed; lost() tells whether the
  // coordinator said the lease expired (then the work went to another worker).
  class Heartbeat {
   public:
    virtual ~Heartbeat() = default;
    virtual bool lost() = 0;
  };
  std::unique_ptr<Heartbeat> StartHeartbeat(const v1::WorkItem& item);

  // Reports the outcome of `item` (sets worker and lease ids), retrying while the coordinator is
  // unavailable. A refusal is printed and returned.
  absl::Status Report(const v1::WorkItem& item, v1::ReportResultRequest report);
  // The work cannot be done here; `permanent`: nor anywhere (no retry).
  void Fail(const v1::WorkItem& item, const std::string& reason, bool permanent = false);
  // This worker broke while holding `item` (not the item's fault): it goes back to the queue now.
  void ReturnLost(const v1::WorkItem& item, const std::string& reason);
  // The study's artifact (its refusal directions), all chunks.
  absl::StatusOr<std::string> FetchArtifact(const std::string& study_id);

 private:
  void SendFailure(const v1::WorkItem& item, const std::string& reason, bool permanent,
                   bool worker_lost);
  std::unique_ptr<grpc::ClientContext> Context(int seconds) const;
  void Pause();
  // Logs a failed call to the coordinator with what to check, once per distinct message.
  void LogUnreachable(const grpc::Status& s);

  LinkOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::WorkerService::Stub> stub_;
  std::string worker_id_;
  ReconnectBackoff backoff_;
  std::string unreachable_logged_;  // the last failure LogUnreachable printed ("" after a success)
};

}  // namespace schism::worker

#endif  // SCHISM_WORKER_COORDINATOR_LINK_H_
