#include "worker/runtime/model_export.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/text_file.h"
#include "worker/runtime/directions.h"
#include "worker/runtime/hf_metadata.h"

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
  if (dot == std::string::npos ||
      !absl::SimpleAtoi(name.substr(kPrefix.size(), dot - kPrefix.size()), &layer)) {
    return std::nullopt;
  }
  const std::string rest = name.substr(dot + 1);
  if (rest == "self_attn.o_proj.weight") return AdaptedWeight{layer, common::kAttentionComponent};
  if (rest == "mlp.down_proj.weight") return AdaptedWeight{layer, common::kMlpComponent};
  // Every expert's down projection: Qwen3-MoE's mlp.experts.E.down_proj, Mixtral's
  // block_sparse_moe.experts.E.w2 (DESIGN §2: they count as mlp.down_proj).
  for (const auto& [prefix, suffix] : {std::pair{"mlp.experts.", ".down_proj.weight"},
                                       {"block_sparse_moe.experts.", ".w2.weight"}}) {
    int expert = 0;
    if (absl::StartsWith(rest, prefix) && absl::EndsWith(rest, suffix) &&
        absl::SimpleAtoi(rest.substr(strlen(prefix), rest.size() - strlen(prefix) - strlen(suffix)),
                         &expert)) {
      return AdaptedWeight{layer, common::kMlpComponent};
    }
  }
  return std::nullopt;
}

bool IsFloat(SafetensorsDtype d) {
  return d == SafetensorsDtype::kF32 || d == SafetensorsDtype::kF16 ||
         d == SafetensorsDtype::kBF16 || d == SafetensorsDtype::kF64;
}

at::Tensor CastTo(const at::Tensor& t, SafetensorsDtype d) {
  switch (d) {
    case SafetensorsDtype::kF16:
      return t.to(at::kHalf).contiguous();
    case SafetensorsDtype::kBF16:
      return t.to(at::kBFloat16).contiguous();
    case SafetensorsDtype::kF64:
      return t.to(at::kDouble).contiguous();
    default:
      return t.to(at::kFloat).contiguous();
  }
}

absl::Status CheckDirections(const ModelSource& source, const at::Tensor& directions) {
  const ModelConfig& c = source.config;
  if (directions.dim() != 2 || directions.size(0) != c.num_layers + 1 ||
      directions.size(1) != c.hidden_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the refusal directions (",
        directions.dim() == 2 ? absl::StrCat(directions.size(0), " x ", directions.size(1)) : "?",
        ") do not fit ", source.path, " (", c.num_layers + 1, " x ", c.hidden_size,
        "): were they computed for another model?"));
  }
  return absl::OkStatus();
}

// Weight files and the source's model card stay behind; everything else (config, tokenizer,
// generation config, chat template) is copied.
bool IsWeightOrCard(const std::string& name) {
  for (const char* ext :
       {".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack", ".ckpt"}) {
    if (absl::EndsWith(name, ext)) return true;
  }
  return name == "model.safetensors.index.json" || name == "pytorch_model.bin.index.json" ||
         name == "README.md" || absl::StartsWith(name, ".");
}

absl::Status CopyHfMetadata(const ModelSource& source, const MergeOptions& options,
                            const std::string& folder) {
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(source.path, ec)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file() || IsWeightOrCard(name)) continue;
    if (name == "config.json" && options.dtype) {
      std::ifstream in(entry.path());
      auto config = nlohmann::ordered_json::parse(in, nullptr, false);
      if (config.is_discarded())
        return absl::InvalidArgumentError(absl::StrCat(entry.path().string(), ": invalid JSON"));
      config["torch_dtype"] = TorchDtypeName(*options.dtype);
      if (auto s = common::WriteTextFile((fs::path(folder) / name).string(), config.dump(2) + "\n");
          !s.ok())
        return s;
      continue;
    }
    fs::copy_file(entry.path(), fs::path(folder) / name, fs::copy_options::overwrite_existing, ec);
    if (ec)
      return absl::DataLossError(
          absl::StrCat("copying ", entry.path().string(), ": ", ec.message()));
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
    case SafetensorsDtype::kF16:
      return "float16";
    case SafetensorsDtype::kBF16:
      return "bfloat16";
    case SafetensorsDtype::kF64:
      return "float64";
    default:
      return "float32";
  }
}

double AdapterStrength(const common::TrialParameters& params, int num_layers, int layer,
                       const char* component) {
  auto it = params.components.find(component);
  return it == params.components.end() ? 0.0 : common::LayerWeights(it->second, num_layers)[layer];
}

namespace {

// The PEFT side of an export: rank-1 LoRA (or DoRA) tensors per adapted module, then the config.
class PeftAdapterWriter {
 public:
  PeftAdapterWriter(std::string folder, RowNormalization mode)
      : folder_(std::move(folder)),
        mode_(mode),
        writer_(folder_, 0, {{"format", "pt"}}, "adapter_model") {}

  absl::Status Add(const std::string& weight_name, const MpoaAdapter& adapter,
                   const at::Tensor& row_norms) {
    const std::string module =
        weight_name.substr(0, weight_name.size() - std::string(".weight").size());
    const std::string prefix = "base_model.model." + module;
    const at::Tensor a = adapter.a.reshape({1, -1}).contiguous();
    const at::Tensor b = adapter.b.reshape({-1, 1}).contiguous();
    absl::Status s = AddF32(prefix + ".lora_A.weight", a);
    if (s.ok()) s = AddF32(prefix + ".lora_B.weight", b);
    if (s.ok() && mode_ == RowNormalization::kFull)
      s = AddF32(prefix + ".lora_magnitude_vector", row_norms);
    modules_.push_back(module);
    return s;
  }

  absl::Status Finish(const std::string& base_model_name) {
    if (auto s = writer_.Finish(); !s.ok()) return s;
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
    config["use_dora"] = mode_ == RowNormalization::kFull;
    config["target_modules"] = modules_;
    config["init_lora_weights"] = true;
    config["inference_mode"] = true;
    config["modules_to_save"] = nullptr;
    return common::WriteTextFile((fs::path(folder_) / "adapter_config.json").string(),
                                 config.dump(2) + "\n");
  }

 private:
  absl::Status AddF32(const std::string& name, const at::Tensor& t) {
    const at::Tensor c = t.to(at::kFloat).contiguous();
    return writer_.Add(name, SafetensorsDtype::kF32, c.sizes().vec(), c.data_ptr(),
                       c.numel() * sizeof(float));
  }

  std::string folder_;
  RowNormalization mode_;
  formats::SafetensorsWriter writer_;
  std::vector<std::string> modules_;
};

}  // namespace

absl::StatusOr<MergeStats> WriteTrialExport(const ModelSource& source, const at::Tensor& directions,
                                            const common::TrialParameters& params,
                                            const MergeOptions& options,
                                            const ExportTargets& targets) {
  if (auto s = CheckDirections(source, directions); !s.ok()) return s;
  c10::NoGradGuard no_grad;
  const bool merged = !targets.merged_folder.empty();
  // Metadata first: an unsupported source fails before any weight is written.
  if (merged && source.kind == ModelSource::Kind::kGguf) {
    const char* torch_dtype = TorchDtypeName(options.dtype.value_or(SafetensorsDtype::kF32));
    if (auto s = WriteHfMetadataFromGguf(*source.gguf, source.config, torch_dtype,
                                         targets.merged_folder);
        !s.ok()) {
      return s;
    }
  } else if (merged) {
    if (auto s = CopyHfMetadata(source, options, targets.merged_folder); !s.ok()) return s;
  }
  std::optional<formats::SafetensorsWriter> writer;
  if (merged) writer.emplace(targets.merged_folder, options.max_shard_bytes);
  std::optional<PeftAdapterWriter> peft;
  if (!targets.adapter_folder.empty())
    peft.emplace(targets.adapter_folder, options.row_normalization);

  const int num_layers = source.config.num_layers;
  MergeStats stats;
  for (const SourceTensor& t : source.tensors->List()) {
    if (t.name == "rope_freqs") continue;  // llama.cpp's copy of config.json's rope_scaling
    // A GGUF tensor must have a Hugging Face name; a folder's other tensors (a vision tower, a
    // projector) are copied as they are.
    if (t.decoder_name.empty() && source.kind == ModelSource::Kind::kGguf) {
      return absl::UnimplementedError(
          absl::StrCat(source.path, ": tensor ", t.name, " has no Hugging Face name schism knows"));
    }
    const std::optional<AdaptedWeight> adapted = ParseAdaptedWeight(t.decoder_name);
    const double lambda =
        adapted && adapted->layer < num_layers
            ? AdapterStrength(params, num_layers, adapted->layer, adapted->component)
            : 0.0;
    if (!merged && lambda == 0) continue;  // an adapter-only export reads just the adapted weights
    const formats::SafetensorsTensor* stored = source.tensors->Stored(t.name);
    const SafetensorsDtype source_dtype = t.dtype.value_or(SafetensorsDtype::kF32);
    const SafetensorsDtype out_dtype =
        IsFloat(source_dtype) ? options.dtype.value_or(source_dtype) : source_dtype;
    absl::Status added;
    if (lambda == 0 && stored != nullptr && stored->dtype == out_dtype) {
      added = writer->Add(t.name, out_dtype, t.shape, stored->data, stored->n_bytes);
      stats.copied++;
      stats.bytes += stored->n_bytes;
    } else {
      if (!IsFloat(source_dtype)) {
        return absl::UnimplementedError(absl::StrCat(
            source.path, ": tensor ", t.name, " has dtype ",
            formats::SafetensorsDtypeName(source_dtype), ", which cannot be converted"));
      }
      auto read = source.tensors->Read(t.name, t.shape);
      if (!read.ok()) return read.status();
      at::Tensor w = std::move(*read);
      if (lambda != 0) {
        // One adapter per weight serves both outputs; row norms of the full-precision W.
        const at::Tensor norms = w.norm(2, {1});
        const MpoaAdapter adapter =
            ComputeMpoaAdapter(w, norms, DirectionForLayer(directions, params, adapted->layer),
                               lambda, options.row_normalization);
        if (peft) added = peft->Add(t.name, adapter, norms);
        w.addr_(adapter.b, adapter.a);  // W + B A
        if (adapter.scale.defined()) w.mul_(adapter.scale.unsqueeze(1));
        stats.adapted++;
      } else {
        stats.converted++;
      }
      if (merged && added.ok()) {
        const at::Tensor out = CastTo(w, out_dtype);
        const size_t n_bytes = out.numel() * out.element_size();
        added = writer->Add(t.name, out_dtype, t.shape, out.data_ptr(), n_bytes);
        stats.bytes += n_bytes;
      }
    }
    source.tensors->Release(t.name);
    if (!added.ok()) return added;
  }
  if (writer) {
    if (auto s = writer->Finish(); !s.ok()) return s;
  }
  if (peft) {
    if (auto s = peft->Finish(targets.base_model_name); !s.ok()) return s;
  }
  return stats;
}

}  // namespace schism::model
