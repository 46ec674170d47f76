// Compute device selection for the libtorch runtime.
#ifndef SCHISM_COMMON_MODEL_DEVICE_H_
#define SCHISM_COMMON_MODEL_DEVICE_H_

#include <c10/core/Device.h>

#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace schism::model {

// Parses "cpu", "cuda" or "cuda:N". Asking for CUDA in a build or on a machine without it is an
// error that says so, rather than a crash at the first kernel launch.
absl::StatusOr<c10::Device> ParseDevice(absl::string_view text);

// Sets libtorch's intra-op thread count; 0 keeps libtorch's default (one per core).
void SetComputeThreads(int threads);

}  // namespace schism::model

#endif  // SCHISM_COMMON_MODEL_DEVICE_H_
