// The weights of a model on disk, addressed by Hugging Face tensor names, read one tensor at a
// time: a safetensors folder (single file or shards + index) or a GGUF file (dequantized, q/k rows
// restored to Hugging Face order). The loader and the streaming export both read through this.
#ifndef SCHISM_WORKER_RUNTIME_TENSOR_SOURCE_H_
#define SCHISM_WORKER_RUNTIME_TENSOR_SOURCE_H_

#include <ATen/core/Tensor.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/formats/gguf_reader.h"
#include "common/formats/safetensors.h"
#include "worker/runtime/model_config.h"

namespace schism::model {

struct SourceTensor {
  // The name as stored (Hugging Face's, e.g. "model.layers.0.mlp.down_proj.weight"; in a
  // vision-language checkpoint "language_model.model.layers.0..." or "vision_tower.*").
  std::string name;
  // The text decoder's name for it ("model.layers.0.mlp.down_proj.weight", "lm_head.weight"),
  // which Has/Read/Stored/Release also accept; empty for tensors outside the decoder (a vision
  // tower, a projector), which an export copies unchanged.
  std::string decoder_name;
  std::vector<int64_t> shape;  // PyTorch order
  // Storage dtype; nullopt for GGUF quantized types, which safetensors cannot hold.
  std::optional<formats::SafetensorsDtype> dtype;
};

class TensorSource {
 public:
  virtual ~TensorSource() = default;
  virtual bool Has(const std::string& hf_name) const = 0;
  // Every tensor, in file order.
  virtual std::vector<SourceTensor> List() const = 0;
  // Float32 tensor in PyTorch (out, in) order; a shape differing from `expected` is an error.
  virtual absl::StatusOr<at::Tensor> Read(const std::string& hf_name,
                                          const std::vector<int64_t>& expected) const = 0;
  // The stored bytes when they are already what a Hugging Face safetensors file holds (so they
  // can be copied unchanged); null otherwise.
  virtual const formats::SafetensorsTensor* Stored(const std::string& hf_name) const = 0;
  // Drops the tensor's mapped pages from the resident set (see DropMappedPages).
  virtual void Release(const std::string& hf_name) const = 0;
};

// An opened model: its config and its tensors.
struct ModelSource {
  enum class Kind { kHfFolder, kGguf };
  Kind kind = Kind::kHfFolder;
  std::string path;
  ModelConfig config;
  std::unique_ptr<formats::GgufReader> gguf;               // kGguf
  std::unique_ptr<formats::SafetensorsModel> safetensors;  // kHfFolder
  std::unique_ptr<TensorSource> tensors;
};

// `path` is a Hugging Face folder (config.json + safetensors) or a .gguf file.
absl::StatusOr<std::unique_ptr<ModelSource>> OpenModelSource(const std::string& path);

}  // namespace schism::model

#endif  // SCHISM_WORKER_RUNTIME_TENSOR_SOURCE_H_
