// Writes a chosen trial's abliterated model at full precision (docs/algorithm.md#merged-export),
// streaming the source one tensor at a time so peak memory tracks the largest tensor, not the
// model.
//
// For every adapted weight W (attention o_proj and MLP down_proj of layers the trial touches) the
// MPOA adapter (A, B, s) is recomputed from the full-precision W with the trial's parameters and
// the study's refusal directions, exactly as a worker computes it on the 4-bit model, and
// diag(s)(W + BA) is written. Every other tensor is copied byte for byte (or converted when an
// output dtype is forced).
#ifndef SCHISM_WORKER_RUNTIME_MODEL_EXPORT_H_
#define SCHISM_WORKER_RUNTIME_MODEL_EXPORT_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/formats/safetensors.h"
#include "common/trial_parameters.h"
#include "worker/runtime/mpoa.h"
#include "worker/runtime/tensor_source.h"

namespace schism::model {

struct MergeOptions {
  RowNormalization row_normalization = RowNormalization::kFull;
  // Output dtype of floating-point tensors; nullopt keeps each tensor's source dtype (float32
  // for quantized GGUF tensors).
  std::optional<formats::SafetensorsDtype> dtype;
  uint64_t max_shard_bytes = 5ull << 30;
};

struct MergeStats {
  int adapted = 0;    // weights rewritten as diag(s)(W + BA)
  int copied = 0;     // tensors copied byte for byte
  int converted = 0;  // tensors dequantized or cast
  uint64_t bytes = 0;
};

// "float32" | "bfloat16" | "float16" (also F32/BF16/F16); anything else is an error naming it.
absl::StatusOr<formats::SafetensorsDtype> ParseExportDtype(const std::string& name);
// PyTorch's name of a float dtype ("bfloat16"), as config.json's torch_dtype spells it.
const char* TorchDtypeName(formats::SafetensorsDtype dtype);

// λ of `component` (common::kAttentionComponent or kMlpComponent) in decoder layer `layer` for
// the trial; 0 means the trial leaves that weight alone.
double AdapterStrength(const common::TrialParameters& params, int num_layers, int layer,
                       const char* component);

// What to write; an empty folder is skipped (both must exist when given).
struct ExportTargets {
  // The merged model as a Hugging Face folder: sharded safetensors with an index, config.json,
  // tokenizer and generation files (copied from an HF source, written from GGUF metadata).
  std::string merged_folder;
  // The trial as a PEFT adapter: adapter_config.json + adapter_model.safetensors with rank-1
  // lora_A (1, in) and lora_B (out, 1) per adapted module (lora_alpha = r = 1, so PEFT's scaling
  // is 1), plus lora_magnitude_vector (out) = ‖W_i‖ and use_dora for row normalization "full"
  // (DoRA's m ∘ (W + BA)/‖W + BA‖ is then exactly diag(s)(W + BA)).
  std::string adapter_folder;
  std::string base_model_name;  // adapter_config.json base_model_name_or_path
};

// One pass over the source: each adapted weight is read once and its adapter computed once for
// both outputs; an adapter-only export reads only the adapted weights.
absl::StatusOr<MergeStats> WriteTrialExport(const ModelSource& source, const at::Tensor& directions,
                                            const common::TrialParameters& params,
                                            const MergeOptions& options,
                                            const ExportTargets& targets);

}  // namespace schism::model

#endif  // SCHISM_WORKER_RUNTIME_MODEL_EXPORT_H_
