// Loads a model for inference: config, weights (dequantized to the compute dtype), tokenizer and
// chat template, from a GGUF file.
#ifndef SCHISM_WORKER_RUNTIME_MODEL_LOADER_H_
#define SCHISM_WORKER_RUNTIME_MODEL_LOADER_H_

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tokenizer/bpe_tokenizer.h"
#include "worker/runtime/transformer.h"

namespace schism::model {

enum class Quantization {
  kNone,
  // bitsandbytes NF4 with double quantization for every decoder linear layer (embeddings and
  // lm_head stay in the compute dtype): the worker keeps only the packed codes and scales
  // (~0.52 bytes per weight) on its device and dequantizes each layer as a forward pass uses it.
  kNf4,
};

struct LoadOptions {
  c10::ScalarType dtype = c10::kFloat;  // compute dtype: float32, bfloat16 or float16
  Quantization quantization = Quantization::kNone;
  c10::Device device = c10::Device(c10::kCPU);  // where the weights (and every activation) live
  // This process is one rank of a tensor-parallel group: it keeps only its shard of every decoder
  // linear layer (tensor_parallel.h says which) and its forward passes meet the other ranks'.
  std::shared_ptr<TensorParallel> tensor_parallel;
};

struct LoadedModel {
  std::unique_ptr<Transformer> transformer;
  std::unique_ptr<tokenizer::BpeTokenizer> tokenizer;
  std::string chat_template;  // Jinja source; empty when the model has none
  std::string bos_token;      // text of BOS/EOS for templates that print them
  std::string eos_token;
  std::vector<int32_t> stop_ids;  // generation ends at any of these
};

// Why `config` cannot be split over `world_size` ranks (heads, key/value heads and MLP rows must
// divide evenly), or OK.
absl::Status CheckTensorParallel(const ModelConfig& config, int world_size);

// `path` is a .gguf file. Errors name the file and, for weights, the tensor.
absl::StatusOr<LoadedModel> LoadModel(const std::string& path, const LoadOptions& options = {});

}  // namespace schism::model

#endif  // SCHISM_WORKER_RUNTIME_MODEL_LOADER_H_
