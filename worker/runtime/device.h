// Compute device selection for the libtorch runtime.
#ifndef SCHISM_WORKER_RUNTIME_DEVICE_H_
#define SCHISM_WORKER_RUNTIME_DEVICE_H_

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace schism::model {

// Parses "cpu", "cuda" or "cuda:N". Asking for CUDA in a build or on a machine without it is an
// error that says so, rather than a crash at the first kernel launch.
absl::StatusOr<c10::Device> ParseDevice(absl::string_view text);

// Parses a compute dtype: float32|fp32, bfloat16|bf16, float16|fp16; empty = the device's
// default (bfloat16 on CUDA, float32 on the CPU).
absl::StatusOr<c10::ScalarType> ParseComputeDtype(absl::string_view text,
                                                  const c10::Device& device);

// Sets libtorch's intra-op thread count; 0 keeps libtorch's default (one per core).
void SetComputeThreads(int threads);

// Keeps freed CPU buffers of up to 1 GiB in the process heap for reuse. glibc maps every buffer
// above its threshold (at most 32 MiB) afresh and unmaps it when freed, so the large temporaries
// of a many-row decode step (the vocabulary screen of 200 rows is 39 MiB) cost page faults and
// zeroed pages on every step: 7% of a trial's CPU time at 200 rows, ~1% at the default 64. For
// processes that evaluate trials, not for exports (whose peak memory would then include freed
// buffers).
void KeepLargeBuffersOnTheHeap();

}  // namespace schism::model

#endif  // SCHISM_WORKER_RUNTIME_DEVICE_H_
