// Tensor parallelism across processes ("ranks") through libtorch's c10d process groups: Gloo on
// the CPU, NCCL on CUDA devices; the ranks meet at a c10d TCPStore that rank 0 serves.
//
// Megatron's split (docs/architecture.md#tensor-parallel-workers): q/k/v and gate/up are
// column-parallel (each rank holds 1/N of the heads and of the MLP's intermediate rows), o_proj
// and down_proj row-parallel (the matching 1/N of their input columns), so a layer needs one
// all-reduce after each of them. Embeddings, norms, the router and lm_head are replicated.
// Everything above a layer's all-reduce is the same on every rank, and rank 0's final hidden
// state is broadcast before lm_head, so all ranks pick the same tokens and stay in lockstep.
#ifndef SCHISM_WORKER_RUNTIME_TENSOR_PARALLEL_H_
#define SCHISM_WORKER_RUNTIME_TENSOR_PARALLEL_H_

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace schism::model {

struct TensorParallelOptions {
  int world_size = 1;
  int rank = 0;
  std::string master_host = "127.0.0.1";  // where rank 0 serves the rendezvous store
  int master_port = 0;
  // How long a collective (or the rendezvous) may wait for the other ranks.
  std::chrono::milliseconds timeout = std::chrono::minutes(10);
};

class TensorParallel {
 public:
  // Joins the group: rank 0 serves the store, the others connect to it; returns once all
  // world_size ranks are there. The backend follows `device` (Gloo for the CPU, NCCL for CUDA).
  static absl::StatusOr<std::shared_ptr<TensorParallel>> Connect(
      const TensorParallelOptions& options, const c10::Device& device);
  ~TensorParallel();
  TensorParallel(const TensorParallel&) = delete;
  TensorParallel& operator=(const TensorParallel&) = delete;

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  const char* backend_name() const;

  // In place: every rank's `t` becomes the elementwise sum over the ranks (identical everywhere).
  void AllReduceSum(at::Tensor& t) const;
  // In place: every rank's `t` becomes rank 0's.
  void Broadcast(at::Tensor& t) const;
  // Every rank learns whether all ranks are fine: OK if all passed OK; otherwise an error naming
  // the failed ranks (and, on each failed rank, its own message). A collective: every rank calls
  // it at the same point, so a failure local to one rank (a file it cannot read) stops all of
  // them there instead of leaving the others waiting in the next collective.
  absl::Status Agree(const absl::Status& local) const;

  // Rank 0 publishes control messages in order, through the store (no collective, so the other
  // ranks may wait for the next one as long as rank 0 is alive: an idle worker polls for hours).
  void Publish(const std::string& message);
  // Ranks > 0: the next message rank 0 published; an error once rank 0 is gone.
  absl::StatusOr<std::string> NextMessage();

 private:
  struct Group;
  TensorParallel(int rank, int world_size, std::unique_ptr<Group> group);
  int rank_, world_size_;
  std::unique_ptr<Group> group_;
  int64_t next_message_ = 0;
};

// The process group over `options` for `device`, or none (nullptr) when world_size is 1.
absl::StatusOr<std::shared_ptr<TensorParallel>> ConnectIfParallel(
    const TensorParallelOptions& options, const c10::Device& device);

}  // namespace schism::model

#endif  // SCHISM_WORKER_RUNTIME_TENSOR_PARALLEL_H_
