// How `schism worker --tensor-parallel N` becomes N ranks (worker/runtime/tensor_parallel.h):
//   --tp-rank R --tp-master HOST:PORT   this process is rank R (any launcher, any host);
//   --tp-master HOST:PORT under srun    one task per rank: rank = SLURM_PROCID, device = the
//                                       SLURM_LOCALID-th GPU (a group across nodes);
//   neither                             this process is rank 0 and starts ranks 1..N-1 itself,
//                                       on this host, meeting on 127.0.0.1 (one GPU each).
#ifndef SCHISM_CLI_TENSOR_PARALLEL_LAUNCH_H_
#define SCHISM_CLI_TENSOR_PARALLEL_LAUNCH_H_

#include <sys/types.h>

#include <c10/core/Device.h>

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/args.h"
#include "worker/runtime/tensor_parallel.h"

namespace schism::cli {

struct TensorParallelLaunch {
  model::TensorParallelOptions options;  // world_size 1: no tensor parallelism
  int local_rank = 0;                    // this rank's GPU: cuda:K+local_rank for --device cuda:K
  bool spawn_local_ranks = false;        // rank 0 starts ranks 1..N-1 on this host
};

// Reads --tensor-parallel, --tp-rank, --tp-master and Slurm's task variables. Errors are usage
// errors naming the flag.
absl::StatusOr<TensorParallelLaunch> PlanTensorParallel(const Args& args);

// This rank's device: `device` shifted by the local rank on CUDA (cuda:K -> cuda:K+local_rank).
c10::Device RankDevice(const c10::Device& device, const TensorParallelLaunch& launch);

// Rank 0 of a local launch: picks a free loopback port for the rendezvous (into
// launch->options) and starts ranks 1..N-1 as `schism worker <same flags> --tp-rank r
// --tp-master 127.0.0.1:PORT [--device cuda:K+r] [--threads T]` (`device` = cuda:K or the CPU);
// each ends when this process does (PDEATHSIG).
absl::StatusOr<std::vector<pid_t>> StartLocalRanks(const Args& args, TensorParallelLaunch* launch,
                                                   const c10::Device& device, int threads_per_rank);

// Waits up to `grace_seconds` for the started ranks to end, then kills what is left.
void ReapLocalRanks(const std::vector<pid_t>& ranks, int grace_seconds);

}  // namespace schism::cli

#endif  // SCHISM_CLI_TENSOR_PARALLEL_LAUNCH_H_
