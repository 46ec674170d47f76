#include "common/model/model_export.h"

#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/text_file.h"
#include "common/model/directions.h"
#include "common/model/hf_metadata.h"

namespace schism::model {
namespace {

namespace fs = std::filesystem;
using formats::SafetensorsDtype;

struct AdaptedWeight {
  int layer;
  const char* component;
};

// "model.layers.7.self_attn.o_proj.weight" -> {7, attention}; nullopt for weights MPOA leaves.
std::optional<AdaptedWeight> ParseAdaptedWeight(const std::string& name) {
  constexpr absl::string_view kPrefix = "model.layers.";
  if (!absl::StartsWith(name, kPrefix)) return std::nullopt;
  const size_t dot = name.find('.', kPrefix.size());
  int layer = 0;
  if (dot == std::string::npos || !absl::SimpleAtoi(name.substr(kPrefix.size(), dot - kPrefix.size()), &layer)) {
    return std::nullopt;
  }
  const std::string rest = name.substr(dot + 1);
  if (rest == "self_attn.o_proj.weight") return AdaptedWeight{layer, common::kAttentionComponent};
  if (rest == "mlp.down_proj.weight") return AdaptedWeight{layer, common::kMlpComponent};
  return std::nullopt;
}

bool IsFloat(SafetensorsDtype d) {
  return d == SafetensorsDtype::kF32 || d == SafetensorsDtype::kF16 || d == SafetensorsDtype::kBF16 ||
         d == SafetensorsDtype::kF64;
}

at::Tensor CastTo(const at::Tensor& t, SafetensorsDtype d) {
  switch (d) {
    case SafetensorsDtype::kF16: return t.to(torch::kHalf).contiguous();
    case SafetensorsDtype::kBF16: return t.to(torch::kBFloat16).contiguous();
    case SafetensorsDtype::kF64: return t.to(torch::kDouble).contiguous();
    default: return t.to(torch::kFloat).contiguous();
  }
}

absl::Status CheckDirections(const ModelSource& source, const at::Tensor& directions) {
  const ModelConfig& c = source.config;
  if (directions.dim() != 2 || directions.size(0) != c.num_layers + 1 || directions.size(1) != c.hidden_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the refusal directions (", directions.dim() == 2 ? absl::StrCat(directions.size(0), " x ", directions.size(1)) : "?",
        ") do not fit ", source.path, " (", c.num_layers + 1, " x ", c.hidden_size,
        "): were they computed for another model?"));
  }
  return absl::OkStatus();
}

// Weight files and the source's model card stay behind; everything else (config, tokenizer,
// generation config, chat template) is copied.
bool IsWeightOrCard(const std::string& name) {
  for (const char* ext : {".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack", ".ckpt"}) {
    if (absl::EndsWith(name, ext)) return true;
  }
  return name == "model.safetensors.index.json" || name == "pytorch_model.bin.index.json" ||
         name == "README.md" || absl::StartsWith(name, ".");
}

absl::Status CopyHfMetadata(const ModelSource& source, const MergeOptions& options, const std::string& folder) {
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(source.path, ec)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file() || IsWeightOrCard(name)) continue;
    if (name == "config.json" && options.dtype) {
      std::ifstream in(entry.path());
      auto config = nlohmann::ordered_json::parse(in, nullptr, false);
      if (config.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(entry.path().string(), ": invalid JSON"));
      config["torch_dtype"] = TorchDtypeName(*options.dtype);
      if (auto s = common::WriteTextFile((fs::path(folder) / name).string(), config.dump(2) + "\n"); !s.ok()) return s;
      continue;
    }
    fs::copy_file(entry.path(), fs::path(folder) / name, fs::copy_options::overwrite_existing, ec);
    if (ec) return absl::DataLossError(absl::StrCat("copying ", entry.path().string(), ": ", ec.message()));
  }
  if (ec) return absl::NotFoundError(absl::StrCat(source.path, ": ", ec.message()));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SafetensorsDtype> ParseExportDtype(const std::string& name) {
  if (name == "float32" || name == "F32" || name == "fp32") return SafetensorsDtype::kF32;
  if (name == "bfloat16" || name == "BF16" || name == "bf16") return SafetensorsDtype::kBF16;
  if (name == "float16" || name == "F16" || name == "fp16") return SafetensorsDtype::kF16;
  return absl::InvalidArgumentError(
      absl::StrCat("export dtype \"", name, "\": expected float32, bfloat16 or float16"));
}

const char* TorchDtypeName(SafetensorsDtype dtype) {
  switch (dtype) {
    case SafetensorsDtype::kF16: return "float16";
    case SafetensorsDtype::kBF16: return "bfloat16";
    case SafetensorsDtype::kF64: return "float64";
    default: return "float32";
  }
}

std::optional<MpoaAdapter> TrialAdapter(const at::Tensor& w, const at::Tensor& directions,
                                        const common::TrialParameters& params, int num_layers, int layer,
                                        const char* component, RowNormalization mode) {
  auto it = params.components.find(component);
  if (it == params.components.end()) return std::nullopt;
  const double lambda = common::LayerWeights(it->second, num_layers)[layer];
  if (lambda == 0) return std::nullopt;
  torch::NoGradGuard no_grad;
  const at::Tensor v = DirectionForLayer(directions, params, layer);
  return ComputeMpoaAdapter(w, w.norm(2, {1}), v, lambda, mode);
}

absl::StatusOr<MergeStats> WriteMergedModel(const ModelSource& source, const at::Tensor& directions,
                                            const common::TrialParameters& params,
                                            const MergeOptions& options, const std::string& folder) {
  if (auto s = CheckDirections(source, directions); !s.ok()) return s;
  torch::NoGradGuard no_grad;
  // Metadata first: an unsupported source fails before any weight is written.
  if (source.kind == ModelSource::Kind::kGguf) {
    const char* torch_dtype = TorchDtypeName(options.dtype.value_or(SafetensorsDtype::kF32));
    if (auto s = WriteHfMetadataFromGguf(*source.gguf, source.config, torch_dtype, folder); !s.ok()) return s;
  } else if (auto s = CopyHfMetadata(source, options, folder); !s.ok()) {
    return s;
  }
  const int num_layers = source.config.num_layers;
  formats::SafetensorsWriter writer(folder, options.max_shard_bytes);
  MergeStats stats;
  for (const SourceTensor& t : source.tensors->List()) {
    if (t.name == "rope_freqs") continue;  // llama.cpp's copy of config.json's rope_scaling
    if (!absl::StartsWith(t.name, "model.") && t.name != "lm_head.weight") {
      return absl::UnimplementedError(
          absl::StrCat(source.path, ": tensor ", t.name, " has no Hugging Face name schism knows"));
    }
    const formats::SafetensorsTensor* stored = source.tensors->Stored(t.name);
    const SafetensorsDtype source_dtype = t.dtype.value_or(SafetensorsDtype::kF32);
    const SafetensorsDtype out_dtype = IsFloat(source_dtype) ? options.dtype.value_or(source_dtype) : source_dtype;

    std::optional<MpoaAdapter> adapter;
    at::Tensor w;
    if (auto adapted = ParseAdaptedWeight(t.name); adapted && adapted->layer < num_layers) {
      auto read = source.tensors->Read(t.name, t.shape);
      if (!read.ok()) return read.status();
      w = std::move(*read);
      adapter = TrialAdapter(w, directions, params, num_layers, adapted->layer, adapted->component,
                             options.row_normalization);
    }
    absl::Status added;
    if (!adapter && stored != nullptr && stored->dtype == out_dtype) {
      added = writer.Add(t.name, out_dtype, t.shape, stored->data, stored->n_bytes);
      stats.copied++;
      stats.bytes += stored->n_bytes;
    } else {
      if (!IsFloat(source_dtype)) {
        return absl::UnimplementedError(absl::StrCat(source.path, ": tensor ", t.name, " has dtype ",
                                                     formats::SafetensorsDtypeName(source_dtype),
                                                     ", which cannot be converted"));
      }
      if (!w.defined()) {
        auto read = source.tensors->Read(t.name, t.shape);
        if (!read.ok()) return read.status();
        w = std::move(*read);
      }
      if (adapter) {
        w.addr_(adapter->b, adapter->a);  // W + B A
        if (adapter->scale.defined()) w.mul_(adapter->scale.unsqueeze(1));
        stats.adapted++;
      } else {
        stats.converted++;
      }
      const at::Tensor out = CastTo(w, out_dtype);
      const size_t n_bytes = out.numel() * out.element_size();
      added = writer.Add(t.name, out_dtype, t.shape, out.data_ptr(), n_bytes);
      stats.bytes += n_bytes;
    }
    source.tensors->Release(t.name);
    if (!added.ok()) return added;
  }
  if (auto s = writer.Finish(); !s.ok()) return s;
  return stats;
}

absl::Status WritePeftAdapter(const ModelSource& source, const at::Tensor& directions,
                              const common::TrialParameters& params, RowNormalization mode,
                              const std::string& base_model_name, const std::string& folder) {
  if (auto s = CheckDirections(source, directions); !s.ok()) return s;
  torch::NoGradGuard no_grad;
  const int num_layers = source.config.num_layers;
  formats::SafetensorsWriter writer(folder, /*max_shard_bytes=*/0, {{"format", "pt"}}, "adapter_model");
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const SourceTensor& t : source.tensors->List()) shapes[t.name] = t.shape;
  std::vector<std::string> modules;
  for (int layer = 0; layer < num_layers; ++layer) {
    for (const char* component : {common::kAttentionComponent, common::kMlpComponent}) {
      const bool attention = std::string(component) == common::kAttentionComponent;
      const std::string module =
          absl::StrCat("model.layers.", layer, attention ? ".self_attn.o_proj" : ".mlp.down_proj");
      const std::string weight_name = module + ".weight";
      auto shape = shapes.find(weight_name);
      if (shape == shapes.end()) return absl::NotFoundError(absl::StrCat(source.path, ": missing tensor ", weight_name));
      auto w = source.tensors->Read(weight_name, shape->second);
      if (!w.ok()) return w.status();
      std::optional<MpoaAdapter> adapter = TrialAdapter(*w, directions, params, num_layers, layer, component, mode);
      if (adapter) {
        const std::string prefix = "base_model.model." + module;
        const at::Tensor a = adapter->a.reshape({1, -1}).contiguous();
        const at::Tensor b = adapter->b.reshape({-1, 1}).contiguous();
        absl::Status s = writer.Add(prefix + ".lora_A.weight", SafetensorsDtype::kF32, a.sizes().vec(),
                                    a.data_ptr(), a.numel() * 4);
        if (s.ok()) {
          s = writer.Add(prefix + ".lora_B.weight", SafetensorsDtype::kF32, b.sizes().vec(), b.data_ptr(),
                         b.numel() * 4);
        }
        if (s.ok() && mode == RowNormalization::kFull) {
          const at::Tensor m = w->norm(2, {1}).contiguous();
          s = writer.Add(prefix + ".lora_magnitude_vector", SafetensorsDtype::kF32, m.sizes().vec(),
                         m.data_ptr(), m.numel() * 4);
        }
        if (!s.ok()) return s;
        modules.push_back(module);
      }
      source.tensors->Release(weight_name);
    }
  }
  if (auto s = writer.Finish(); !s.ok()) return s;
  nlohmann::ordered_json config;
  config["peft_type"] = "LORA";
  config["task_type"] = "CAUSAL_LM";
  config["base_model_name_or_path"] = base_model_name;
  config["r"] = 1;
  config["lora_alpha"] = 1;
  config["lora_dropout"] = 0.0;
  config["bias"] = "none";
  config["fan_in_fan_out"] = false;
  config["use_rslora"] = false;
  config["use_dora"] = mode == RowNormalization::kFull;
  config["target_modules"] = modules;
  config["init_lora_weights"] = true;
  config["inference_mode"] = true;
  config["modules_to_save"] = nullptr;
  return common::WriteTextFile((fs::path(folder) / "adapter_config.json").string(), config.dump(2) + "\n");
}

}  // namespace schism::model
