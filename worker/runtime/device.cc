#include "worker/runtime/device.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include <charconv>
#include <mutex>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace schism::model {

absl::StatusOr<c10::Device> ParseDevice(absl::string_view text) {
  if (text == "cpu") return c10::Device(c10::kCPU);
  if (text.substr(0, 4) != "cuda" || (text.size() > 4 && text[4] != ':')) {
    return absl::InvalidArgumentError(
        absl::StrCat("device \"", text, "\": expected cpu, cuda or cuda:N"));
  }
  int index = 0;
  if (text.size() > 4) {
    absl::string_view digits = text.substr(5);
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
    if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || index < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("device \"", text, "\": expected cuda:N with N a GPU index"));
    }
  }
  if (!torch::cuda::is_available()) {
    return absl::FailedPreconditionError(
        absl::StrCat("device \"", text, "\": CUDA is not available in this build or machine"));
  }
  const int count = static_cast<int>(torch::cuda::device_count());
  if (index >= count) {
    return absl::InvalidArgumentError(
        absl::StrCat("device \"", text, "\": only ", count, " CUDA device(s) present"));
  }
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
}

absl::StatusOr<c10::ScalarType> ParseComputeDtype(absl::string_view text,
                                                  const c10::Device& device) {
  if (text.empty()) return device.is_cuda() ? c10::kBFloat16 : c10::kFloat;
  if (text == "float32" || text == "fp32") return c10::kFloat;
  if (text == "bfloat16" || text == "bf16") return c10::kBFloat16;
  if (text == "float16" || text == "fp16") return c10::kHalf;
  return absl::InvalidArgumentError(
      absl::StrCat("dtype \"", text, "\": expected float32, bfloat16 or float16"));
}

void SetComputeThreads(int threads) {
  if (threads > 0) at::set_num_threads(threads);
}

void KeepLargeBuffersOnTheHeap() {
#ifdef __GLIBC__
  static std::once_flag once;
  std::call_once(once, [] {
    mallopt(M_MMAP_THRESHOLD, 1 << 30);  // also freezes glibc's sliding threshold
    mallopt(M_TRIM_THRESHOLD, 1 << 30);  // and keeps freed heap top instead of trimming it
  });
#endif
}

}  // namespace schism::model
