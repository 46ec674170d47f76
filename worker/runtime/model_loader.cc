#include "worker/runtime/model_loader.h"

#include <ATen/ATen.h>

#include <malloc.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/formats/gguf_reader.h"
#include "common/formats/safetensors.h"
#include "common/tokenizer/hf_tokenizer_files.h"
#include "worker/runtime/nf4.h"
#include "worker/runtime/tensor_source.h"

namespace schism::model {
namespace {

// Llama 3's "rope_type": "llama3" as per-frequency divisors (what llama.cpp stores as
// rope_freqs.weight): high frequencies kept, low ones divided by `factor`, smooth in between.
at::Tensor Llama3RopeFactors(const ModelConfig& c) {
  const Llama3RopeScaling& s = c.rope_scaling;
  const int64_t rotary = c.RotaryDim(), half = rotary / 2;
  auto factors = at::empty({half}, at::kFloat);
  const double low_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
  const double high_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
  for (int64_t i = 0; i < half; ++i) {
    const double freq = 1.0 / std::pow(c.rope_theta, 2.0 * i / rotary);
    const double wavelen = 2 * M_PI / freq;
    double scaled;
    if (wavelen < high_wavelen) {
      scaled = freq;
    } else if (wavelen > low_wavelen) {
      scaled = freq / s.factor;
    } else {
      const double smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) /
                            (s.high_freq_factor - s.low_freq_factor);
      scaled = (1 - smooth) * freq / s.factor + smooth * freq;
    }
    factors[i] = static_cast<float>(freq / scaled);
  }
  return factors;
}

// How a tensor-parallel rank takes its share of a weight: whole, or 1/N of dim 0 or dim 1.
constexpr std::optional<int> kReplicated, kRows = 0, kColumns = 1;

absl::StatusOr<ModelWeights> LoadWeights(const TensorSource& source, const ModelConfig& c,
                                         const LoadOptions& options) {
  const c10::ScalarType dtype = options.dtype;
  ModelWeights w;
  absl::Status status;
  // The tensor as float32 on the CPU (undefined after an error, which stays in `status`); its
  // mapped file pages leave the resident set, so peak RSS tracks the weights, not the file.
  auto read = [&](const std::string& name, const std::vector<int64_t>& shape) -> at::Tensor {
    if (!status.ok()) return {};
    auto t = source.Read(name, shape);
    source.Release(name);
    if (!t.ok()) {
      status = t.status();
      return {};
    }
    return *t;
  };
  // A tensor-parallel rank's share of `t`: its 1/N of dim 0 (column-parallel q/k/v, gate/up
  // rows) or of dim 1 (row-parallel o_proj, down_proj input columns).
  const int rank = options.tensor_parallel ? options.tensor_parallel->rank() : 0;
  const int world = options.tensor_parallel ? options.tensor_parallel->world_size() : 1;
  auto shard = [&](const at::Tensor& t, std::optional<int> dim) -> at::Tensor {
    if (!t.defined() || !dim) return t;
    if (world == 1) return t.contiguous();
    const int64_t size = t.size(*dim) / world;
    return t.narrow(*dim, rank * size, size).contiguous();
  };
  auto load = [&](const std::string& name, const std::vector<int64_t>& shape,
                  std::optional<int> split = kReplicated) -> at::Tensor {
    const at::Tensor t = shard(read(name, shape), split);
    return t.defined() ? t.to(options.device, dtype) : t;
  };
  // A decoder linear layer: packed NF4 codes on the device for 4-bit workers (bitsandbytes'
  // Linear4bit with double quantization), else the weight in the compute dtype.
  auto pack_linear = [&](LinearWeights* linear, const at::Tensor& full, std::optional<int> split) {
    const at::Tensor t = shard(full, split);
    if (!t.defined()) return;
    if (options.quantization != Quantization::kNf4 || t.numel() % kNf4BlockSize != 0) {
      linear->weight = t.to(options.device, dtype);
    } else {
      linear->nf4 = Nf4ToDevice(QuantizeNf4(t, /*double_quant=*/true), options.device);
    }
  };
  auto load_linear = [&](LinearWeights* linear, const std::string& name,
                         const std::vector<int64_t>& shape, std::optional<int> split) {
    pack_linear(linear, read(name, shape), split);
  };
  // A mixture-of-experts MLP: the router and every expert, stored per expert (Hugging Face;
  // Mixtral names them w1/w3/w2) or as fused 3-D tensors (GGUF), (E, out, in).
  auto load_experts = [&](LayerWeights* layer, const std::string& p) {
    const int64_t E = c.num_experts, I = c.expert_intermediate_size, H = c.hidden_size;
    const bool mixtral = c.architecture == Architecture::kMixtral;
    const std::string moe =
        mixtral && !source.Has(p + "mlp.gate.weight") ? "block_sparse_moe." : "mlp.";
    layer->router = load(p + moe + "gate.weight", {E, H});
    layer->experts.resize(E);
    if (source.Has(p + "mlp.experts.gate_proj.weight")) {
      const at::Tensor gate = read(p + "mlp.experts.gate_proj.weight", {E, I, H});
      const at::Tensor up = read(p + "mlp.experts.up_proj.weight", {E, I, H});
      const at::Tensor down = read(p + "mlp.experts.down_proj.weight", {E, H, I});
      if (!status.ok()) return;
      for (int64_t e = 0; e < E; ++e) {
        pack_linear(&layer->experts[e].gate_proj, gate[e].contiguous(), kRows);
        pack_linear(&layer->experts[e].up_proj, up[e].contiguous(), kRows);
        pack_linear(&layer->experts[e].down_proj, down[e].contiguous(), kColumns);
      }
      return;
    }
    for (int64_t e = 0; e < E && status.ok(); ++e) {
      const std::string x = absl::StrCat(p, moe, "experts.", e, ".");
      ExpertWeights& expert = layer->experts[e];
      load_linear(&expert.gate_proj, x + (mixtral ? "w1" : "gate_proj") + ".weight", {I, H}, kRows);
      load_linear(&expert.up_proj, x + (mixtral ? "w3" : "up_proj") + ".weight", {I, H}, kRows);
      load_linear(&expert.down_proj, x + (mixtral ? "w2" : "down_proj") + ".weight", {H, I},
                  kColumns);
    }
  };
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size, hd = c.head_dim;
  const int64_t q_rows = c.num_heads * hd, kv_rows = c.num_kv_heads * hd;
  w.embed_tokens = load("model.embed_tokens.weight", {V, H});
  w.final_norm = load("model.norm.weight", {H});
  w.lm_head = c.tie_word_embeddings || !source.Has("lm_head.weight")
                  ? w.embed_tokens
                  : load("lm_head.weight", {V, H});
  if (source.Has("rope_freqs")) {
    w.rope_freq_factors = load("rope_freqs", {c.RotaryDim() / 2}).to(at::kFloat);
  } else if (c.rope_scaling.enabled) {
    w.rope_freq_factors = Llama3RopeFactors(c);
  }
  for (int i = 0; i < c.num_layers && status.ok(); ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    LayerWeights layer;
    layer.attn_norm = load(p + "input_layernorm.weight", {H});
    if (source.Has(p + "self_attn.qkv_proj.weight")) {  // Phi-3: q, k, v rows in one tensor
      const at::Tensor qkv = read(p + "self_attn.qkv_proj.weight", {q_rows + 2 * kv_rows, H});
      if (qkv.defined()) {
        pack_linear(&layer.q_proj, qkv.narrow(0, 0, q_rows), kRows);
        pack_linear(&layer.k_proj, qkv.narrow(0, q_rows, kv_rows), kRows);
        pack_linear(&layer.v_proj, qkv.narrow(0, q_rows + kv_rows, kv_rows), kRows);
      }
    } else {
      load_linear(&layer.q_proj, p + "self_attn.q_proj.weight", {q_rows, H}, kRows);
      load_linear(&layer.k_proj, p + "self_attn.k_proj.weight", {kv_rows, H}, kRows);
      load_linear(&layer.v_proj, p + "self_attn.v_proj.weight", {kv_rows, H}, kRows);
    }
    // o_proj and down_proj carry no bias in these architectures; one would belong to rank 0 only.
    load_linear(&layer.o_proj, p + "self_attn.o_proj.weight", {H, q_rows}, kColumns);
    if (c.attention_bias) {
      layer.q_proj.bias = load(p + "self_attn.q_proj.bias", {q_rows}, kRows);
      layer.k_proj.bias = load(p + "self_attn.k_proj.bias", {kv_rows}, kRows);
      layer.v_proj.bias = load(p + "self_attn.v_proj.bias", {kv_rows}, kRows);
    }
    if (c.qk_norm) {
      layer.q_norm = load(p + "self_attn.q_norm.weight", {hd});
      layer.k_norm = load(p + "self_attn.k_norm.weight", {hd});
    }
    if (c.gemma_norms) {
      layer.post_attn_norm = load(p + "post_attention_layernorm.weight", {H});
      layer.mlp_norm = load(p + "pre_feedforward_layernorm.weight", {H});
      layer.post_mlp_norm = load(p + "post_feedforward_layernorm.weight", {H});
    } else {
      layer.mlp_norm = load(p + "post_attention_layernorm.weight", {H});
    }
    if (c.IsMoe(i)) {
      load_experts(&layer, p);
    } else if (source.Has(p + "mlp.gate_up_proj.weight")) {  // Phi-3: gate rows, then up rows
      const at::Tensor gate_up = read(p + "mlp.gate_up_proj.weight", {2 * I, H});
      if (gate_up.defined()) {
        pack_linear(&layer.gate_proj, gate_up.narrow(0, 0, I), kRows);
        pack_linear(&layer.up_proj, gate_up.narrow(0, I, I), kRows);
      }
      load_linear(&layer.down_proj, p + "mlp.down_proj.weight", {H, I}, kColumns);
    } else {
      load_linear(&layer.gate_proj, p + "mlp.gate_proj.weight", {I, H}, kRows);
      load_linear(&layer.up_proj, p + "mlp.up_proj.weight", {I, H}, kRows);
      load_linear(&layer.down_proj, p + "mlp.down_proj.weight", {H, I}, kColumns);
    }
    w.layers.push_back(std::move(layer));
  }
  if (!status.ok()) return status;
  return w;
}

// End-of-turn markers of the supported chat formats also end generation (llama.cpp's EOG set).
void AddStopIds(LoadedModel* model, const std::vector<int32_t>& configured) {
  auto add = [&](int32_t id) {
    if (std::find(model->stop_ids.begin(), model->stop_ids.end(), id) == model->stop_ids.end()) {
      model->stop_ids.push_back(id);
    }
  };
  for (int32_t id : configured) add(id);
  for (const char* text : {"<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>",
                           "<end_of_turn>", "<|end|>"}) {
    if (auto id = model->tokenizer->TokenId(text)) add(*id);
  }
}

absl::StatusOr<LoadedModel> LoadGguf(const ModelSource& source, const LoadOptions& options) {
  const formats::GgufReader* gguf = source.gguf.get();
  auto weights = LoadWeights(*source.tensors, source.config, options);
  if (!weights.ok()) return weights.status();
  auto spec = tokenizer::TokenizerSpecFromGguf(*gguf);
  if (!spec.ok()) return spec.status();
  auto tok = tokenizer::BpeTokenizer::Create(std::move(*spec));
  if (!tok.ok()) return tok.status();

  LoadedModel model;
  model.transformer =
      std::make_unique<Transformer>(source.config, std::move(*weights), options.tensor_parallel);
  model.tokenizer = std::move(*tok);
  if (auto tmpl = gguf->GetString("tokenizer.chat_template"); tmpl.ok())
    model.chat_template = *tmpl;
  const auto& ts = model.tokenizer->spec();
  if (ts.bos_id) model.bos_token = ts.tokens[*ts.bos_id];
  if (ts.eos_id) model.eos_token = ts.tokens[*ts.eos_id];
  AddStopIds(&model, ts.eos_id ? std::vector<int32_t>{*ts.eos_id} : std::vector<int32_t>{});
  return model;
}

absl::StatusOr<LoadedModel> LoadHfFolder(const ModelSource& source, const LoadOptions& options) {
  namespace fs = std::filesystem;
  const std::string& folder = source.path;
  auto weights = LoadWeights(*source.tensors, source.config, options);
  if (!weights.ok()) return weights.status();
  auto spec = tokenizer::TokenizerSpecFromJson((fs::path(folder) / "tokenizer.json").string());
  if (!spec.ok()) return spec.status();
  auto files = tokenizer::ReadHfTokenizerFiles(folder, &*spec);
  if (!files.ok()) return files.status();

  LoadedModel model;
  model.bos_token = files->bos_token;
  model.eos_token = files->eos_token;
  model.chat_template = std::move(files->chat_template);
  const std::optional<int32_t> eos_id = spec->eos_id;
  auto tok = tokenizer::BpeTokenizer::Create(std::move(*spec));
  if (!tok.ok()) return tok.status();
  model.tokenizer = std::move(*tok);
  std::vector<int32_t> eos_ids = files->eos_ids;
  if (eos_id) eos_ids.push_back(*eos_id);
  AddStopIds(&model, eos_ids);
  model.transformer =
      std::make_unique<Transformer>(source.config, std::move(*weights), options.tensor_parallel);
  return model;
}

}  // namespace

namespace {

// Each tensor read during a load is freed once converted or packed. Served from the heap, those
// buffers leave holes that the kept weights pin in the resident set, so while loading, blocks of
// 1 MiB and more come from mmap (returned to the system when freed); afterwards the heap serves
// up to 32 MiB again (glibc's own ceiling for its dynamic threshold), as forward passes want.
// Measured on a 1.35 GiB bf16 model loaded as packed NF4: peak RSS 593 -> 375 MiB above the
// process.
class HeapForLoading {
 public:
  HeapForLoading() { mallopt(M_MMAP_THRESHOLD, 1 << 20); }
  ~HeapForLoading() { mallopt(M_MMAP_THRESHOLD, 32 << 20); }
};

}  // namespace

absl::Status CheckTensorParallel(const ModelConfig& c, int world_size) {
  if (world_size < 1) return absl::InvalidArgumentError("tensor parallel needs at least 1 rank");
  std::vector<std::string> uneven;
  auto check = [&](const char* what, int64_t count) {
    if (count % world_size != 0) uneven.push_back(absl::StrCat(what, " ", count));
  };
  check("attention heads", c.num_heads);
  check("key/value heads", c.num_kv_heads);
  bool dense = false, moe = false;
  for (int i = 0; i < c.num_layers; ++i) (c.IsMoe(i) ? moe : dense) = true;
  if (dense) check("MLP rows (intermediate_size)", c.intermediate_size);
  if (moe) check("expert MLP rows", c.expert_intermediate_size);
  if (uneven.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "cannot split over ", world_size, " tensor-parallel ranks: ", absl::StrJoin(uneven, ", "),
      " (each must be a multiple of ", world_size, ")"));
}

absl::StatusOr<LoadedModel> LoadModel(const std::string& path, const LoadOptions& options) {
  if (options.dtype != c10::kFloat && options.dtype != c10::kBFloat16 &&
      options.dtype != c10::kHalf) {
    return absl::InvalidArgumentError("compute dtype must be float32, bfloat16 or float16");
  }
  auto source = OpenModelSource(path);
  if (!source.ok()) return source.status();
  if ((*source)->config.architecture == Architecture::kGemma3 && options.dtype == c10::kHalf) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": Gemma 3's activations overflow float16; use bfloat16 or float32"));
  }
  if (options.tensor_parallel) {
    if (auto s = CheckTensorParallel((*source)->config, options.tensor_parallel->world_size());
        !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", s.message()));
    }
  }
  const HeapForLoading heap;
  return (*source)->kind == ModelSource::Kind::kGguf ? LoadGguf(**source, options)
                                                     : LoadHfFolder(**source, options);
}

}  // namespace schism::model
