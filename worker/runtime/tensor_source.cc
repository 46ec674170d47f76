#include "worker/runtime/tensor_source.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <map>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/formats/ggml_types.h"

namespace schism::model {
namespace {

absl::Status ShapeMismatch(const std::string& file, const std::string& name,
                           const std::vector<int64_t>& got, const std::vector<int64_t>& expected) {
  return absl::InvalidArgumentError(
      absl::StrCat(file, ": tensor ", name, " has shape [", absl::StrJoin(got, ", "),
                   "], the config implies [", absl::StrJoin(expected, ", "), "]"));
}

// convert_hf_to_gguf.py interleaves the two RoPE halves of each head of q and k for llama-arch
// models (llama.cpp's rotary is pairwise); this restores Hugging Face's row order.
at::Tensor UndoRopePermutation(const at::Tensor& w, int64_t heads) {
  auto sizes = w.sizes().vec();
  return w.view({heads, w.size(0) / heads / 2, 2, -1}).transpose(1, 2).reshape(sizes);
}

const std::map<std::string, std::string>& WholeTensorNames() {  // HF -> GGUF
  static const auto* names = new std::map<std::string, std::string>{
      {"model.embed_tokens.weight", "token_embd.weight"},
      {"model.norm.weight", "output_norm.weight"},
      {"lm_head.weight", "output.weight"},
      {"rope_freqs", "rope_freqs.weight"},
  };
  return *names;
}

// Per-layer names, HF -> GGUF. Gemma 3's four norms take names that mean another norm in Llama
// GGUFs ("ffn_norm" is Llama's post_attention_layernorm but Gemma's pre_feedforward_layernorm).
const std::vector<std::pair<std::string, std::string>>& LayerTensorNames(Architecture arch) {
  static const auto* common = new std::vector<std::pair<std::string, std::string>>{
      {"input_layernorm", "attn_norm"},
      {"self_attn.q_proj", "attn_q"},
      {"self_attn.k_proj", "attn_k"},
      {"self_attn.v_proj", "attn_v"},
      {"self_attn.o_proj", "attn_output"},
      {"self_attn.q_norm", "attn_q_norm"},
      {"self_attn.k_norm", "attn_k_norm"},
      {"mlp.gate_proj", "ffn_gate"},
      {"mlp.up_proj", "ffn_up"},
      {"mlp.down_proj", "ffn_down"},
      // Experts: the router, and GGUF's fused 3-D expert tensors (E, out, in), which take these
      // names here (Hugging Face checkpoints store one tensor per expert instead).
      {"mlp.gate", "ffn_gate_inp"},
      {"mlp.experts.gate_proj", "ffn_gate_exps"},
      {"mlp.experts.up_proj", "ffn_up_exps"},
      {"mlp.experts.down_proj", "ffn_down_exps"},
  };
  static const auto* llama = [] {
    auto* names = new std::vector<std::pair<std::string, std::string>>(*common);
    names->emplace_back("post_attention_layernorm", "ffn_norm");
    return names;
  }();
  static const auto* gemma = [] {
    auto* names = new std::vector<std::pair<std::string, std::string>>(*common);
    names->emplace_back("post_attention_layernorm", "post_attention_norm");
    names->emplace_back("pre_feedforward_layernorm", "ffn_norm");
    names->emplace_back("post_feedforward_layernorm", "post_ffw_norm");
    return names;
  }();
  // Phi-3's fused projections come first: its ffn_up is gate_up (2I rows), not up.
  static const auto* phi3 = [] {
    auto* names = new std::vector<std::pair<std::string, std::string>>{
        {"self_attn.qkv_proj", "attn_qkv"}, {"mlp.gate_up_proj", "ffn_up"}};
    names->insert(names->end(), llama->begin(), llama->end());
    return names;
  }();
  if (arch == Architecture::kPhi3) return *phi3;
  return arch == Architecture::kGemma3 ? *gemma : *llama;
}

std::string GgufName(const std::string& hf, Architecture arch) {
  if (auto it = WholeTensorNames().find(hf); it != WholeTensorNames().end()) return it->second;
  std::vector<std::pair<std::string, std::string>> replacements = {{"model.layers.", "blk."}};
  for (const auto& [h, g] : LayerTensorNames(arch))
    replacements.emplace_back("." + h + ".", "." + g + ".");
  return absl::StrReplaceAll(hf, replacements);
}

// "blk.3.attn_output.weight" -> "model.layers.3.self_attn.o_proj.weight"; nullopt for names
// Hugging Face models do not have.
std::optional<std::string> HfName(const std::string& gguf, Architecture arch) {
  for (const auto& [h, g] : WholeTensorNames()) {
    if (g == gguf) return h;
  }
  std::vector<std::string> parts = absl::StrSplit(gguf, '.');
  if (parts.size() != 4 || parts[0] != "blk") return std::nullopt;
  for (const auto& [h, g] : LayerTensorNames(arch)) {
    if (g == parts[2]) return absl::StrCat("model.layers.", parts[1], ".", h, ".", parts[3]);
  }
  return std::nullopt;
}

// convert_hf_to_gguf.py stores Gemma 3's norm weights as 1 + w (llama.cpp multiplies by the
// stored value); Hugging Face keeps w. Exact both ways for stored values >= 0.5 (Sterbenz).
bool GgufAddsOneToNorm(const std::string& hf_name, Architecture arch) {
  return arch == Architecture::kGemma3 && absl::EndsWith(hf_name, "norm.weight");
}

class GgufSource : public TensorSource {
 public:
  GgufSource(const formats::GgufReader& gguf, const ModelConfig& config)
      : gguf_(gguf), config_(config) {}

  bool Has(const std::string& hf_name) const override {
    return gguf_.FindTensor(GgufName(hf_name, config_.architecture)) != nullptr;
  }

  std::vector<SourceTensor> List() const override {
    std::vector<SourceTensor> out;
    for (const formats::GgufTensorInfo& info : gguf_.tensors()) {
      SourceTensor t;
      t.decoder_name = HfName(info.name, config_.architecture).value_or("");
      t.name = t.decoder_name.empty() ? info.name : t.decoder_name;
      t.shape = Shape(info, 0);
      switch (static_cast<formats::GgmlType>(info.type)) {
        case formats::GgmlType::kF32:
          t.dtype = formats::SafetensorsDtype::kF32;
          break;
        case formats::GgmlType::kF16:
          t.dtype = formats::SafetensorsDtype::kF16;
          break;
        case formats::GgmlType::kBF16:
          t.dtype = formats::SafetensorsDtype::kBF16;
          break;
        default:
          break;
      }
      out.push_back(std::move(t));
    }
    return out;
  }

  absl::StatusOr<at::Tensor> Read(const std::string& hf_name,
                                  const std::vector<int64_t>& expected) const override {
    const std::string name = GgufName(hf_name, config_.architecture);
    const formats::GgufTensorInfo* info = gguf_.FindTensor(name);
    if (info == nullptr) {
      return absl::NotFoundError(absl::StrCat(gguf_.path(), ": missing tensor ", name));
    }
    std::vector<int64_t> shape = Shape(*info, expected.size());
    if (shape != expected) return ShapeMismatch(gguf_.path(), name, shape, expected);
    auto tensor = at::empty(shape, at::kFloat);
    if (auto s = gguf_.ReadTensorAsFloat(*info, tensor.data_ptr<float>()); !s.ok()) return s;
    const bool permuted = config_.architecture == Architecture::kLlama ||
                          config_.architecture == Architecture::kMistral ||
                          config_.architecture == Architecture::kMixtral;
    if (permuted && absl::EndsWith(hf_name, "q_proj.weight")) {
      tensor = UndoRopePermutation(tensor, config_.num_heads);
    } else if (permuted && absl::EndsWith(hf_name, "k_proj.weight")) {
      tensor = UndoRopePermutation(tensor, config_.num_kv_heads);
    } else if (GgufAddsOneToNorm(hf_name, config_.architecture)) {
      tensor.sub_(1.0);
    }
    return tensor;
  }

  // GGUF data is in llama.cpp's layout (q/k rows permuted), so nothing is copied verbatim.
  const formats::SafetensorsTensor* Stored(const std::string&) const override { return nullptr; }

  void Release(const std::string& hf_name) const override {
    if (const formats::GgufTensorInfo* info =
            gguf_.FindTensor(GgufName(hf_name, config_.architecture))) {
      formats::DropMappedPages(gguf_.mapping_data() + info->offset, info->n_bytes);
    }
  }

 private:
  // PyTorch order; a (1, n) GGUF vector reads as (n) when one dimension is expected.
  static std::vector<int64_t> Shape(const formats::GgufTensorInfo& info, size_t expected_rank) {
    std::vector<int64_t> shape(info.dims.rbegin(), info.dims.rend());
    if (shape.size() == 2 && shape[0] == 1 && expected_rank == 1) shape.erase(shape.begin());
    return shape;
  }

  const formats::GgufReader& gguf_;
  const ModelConfig& config_;
};

// Where a checkpoint keeps its text decoder: "model." for causal LMs; vision-language wrappers
// nest it ("language_model.model." as transformers 4.x saved Gemma 3, "model.language_model."
// as later versions do), with lm_head beside it or nowhere (tied).
struct DecoderLayout {
  std::string prefix = "model.";
  std::string lm_head = "lm_head.weight";
};

DecoderLayout FindDecoderLayout(const formats::SafetensorsModel& model) {
  for (const auto& [prefix, lm_head] : {std::pair{"model.", "lm_head.weight"},
                                        {"language_model.model.", "language_model.lm_head.weight"},
                                        {"model.language_model.", "lm_head.weight"}}) {
    if (model.Find(std::string(prefix) + "embed_tokens.weight") != nullptr) {
      return DecoderLayout{prefix, lm_head};
    }
  }
  return {};
}

class SafetensorsSource : public TensorSource {
 public:
  explicit SafetensorsSource(const formats::SafetensorsModel& model)
      : model_(model), layout_(FindDecoderLayout(model)) {}
  bool Has(const std::string& name) const override { return Find(name) != nullptr; }

  std::vector<SourceTensor> List() const override {
    std::vector<SourceTensor> out;
    for (const auto& shard : model_.shards()) {
      for (const formats::SafetensorsTensor& t : shard->tensors())
        out.push_back({t.name, DecoderName(t.name), t.shape, t.dtype});
    }
    return out;
  }

  absl::StatusOr<at::Tensor> Read(const std::string& name,
                                  const std::vector<int64_t>& expected) const override {
    const formats::SafetensorsTensor* t = Find(name);
    if (t == nullptr)
      return absl::NotFoundError(absl::StrCat("safetensors: missing tensor ", name));
    if (t->shape != expected) return ShapeMismatch("safetensors", t->name, t->shape, expected);
    auto tensor = at::empty(t->shape, at::kFloat);
    if (auto s = formats::ReadSafetensorAsFloat(*t, tensor.data_ptr<float>()); !s.ok()) return s;
    return tensor;
  }

  const formats::SafetensorsTensor* Stored(const std::string& name) const override {
    return Find(name);
  }

  void Release(const std::string& name) const override {
    if (const formats::SafetensorsTensor* t = Find(name))
      formats::DropMappedPages(t->data, t->n_bytes);
  }

 private:
  // A stored name, or a decoder name translated to the stored one.
  const formats::SafetensorsTensor* Find(const std::string& name) const {
    if (const formats::SafetensorsTensor* t = model_.Find(name)) return t;
    if (name == "lm_head.weight") return model_.Find(layout_.lm_head);
    if (absl::StartsWith(name, "model.") && layout_.prefix != "model.")
      return model_.Find(layout_.prefix + name.substr(6));
    return nullptr;
  }

  std::string DecoderName(const std::string& stored) const {
    if (stored == layout_.lm_head) return "lm_head.weight";
    if (absl::StartsWith(stored, layout_.prefix))
      return "model." + stored.substr(layout_.prefix.size());
    return "";
  }

  const formats::SafetensorsModel& model_;
  DecoderLayout layout_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ModelSource>> OpenModelSource(const std::string& path) {
  namespace fs = std::filesystem;
  auto source = std::make_unique<ModelSource>();
  source->path = path;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    source->kind = ModelSource::Kind::kHfFolder;
    auto config = ModelConfigFromHfJson((fs::path(path) / "config.json").string());
    if (!config.ok()) return config.status();
    source->config = *config;
    auto tensors = formats::SafetensorsModel::Open(path);
    if (!tensors.ok()) return tensors.status();
    source->safetensors = std::move(*tensors);
    source->tensors = std::make_unique<SafetensorsSource>(*source->safetensors);
    return source;
  }
  if (!fs::exists(path, ec)) {
    return absl::NotFoundError(absl::StrCat(path, ": no such model file or folder"));
  }
  if (!absl::EndsWith(path, ".gguf")) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": a model is a Hugging Face folder or a .gguf file"));
  }
  source->kind = ModelSource::Kind::kGguf;
  auto gguf = formats::GgufReader::Open(path);
  if (!gguf.ok()) return gguf.status();
  source->gguf = std::move(*gguf);
  auto config = ModelConfigFromGguf(*source->gguf);
  if (!config.ok()) return config.status();
  source->config = *config;
  source->tensors = std::make_unique<GgufSource>(*source->gguf, source->config);
  return source;
}

}  // namespace schism::model
