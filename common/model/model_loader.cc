#include "common/model/model_loader.h"

#include <torch/torch.h>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/formats/gguf_reader.h"

namespace schism::model {
namespace {

// Reads a GGUF tensor as a float32 torch tensor in PyTorch dimension order (GGUF's reversed).
absl::StatusOr<at::Tensor> ReadTensor(const formats::GgufReader& gguf, const std::string& name,
                                      std::vector<int64_t> expected_shape) {
  const formats::GgufTensorInfo* info = gguf.FindTensor(name);
  if (info == nullptr) {
    return absl::NotFoundError(absl::StrCat(gguf.path(), ": missing tensor ", name));
  }
  std::vector<int64_t> shape(info->dims.rbegin(), info->dims.rend());
  if (shape != expected_shape) {
    return absl::InvalidArgumentError(absl::StrCat(
        gguf.path(), ": tensor ", name, " has shape [", absl::StrJoin(shape, ", "),
        "], the config implies [", absl::StrJoin(expected_shape, ", "), "]"));
  }
  auto tensor = torch::empty(shape, torch::kFloat);
  if (auto s = gguf.ReadTensorAsFloat(*info, tensor.data_ptr<float>()); !s.ok()) return s;
  return tensor;
}

// convert_hf_to_gguf.py interleaves the two RoPE halves of each head of q and k for llama-arch
// models (llama.cpp's rotary is pairwise); this restores Hugging Face's row order.
at::Tensor UndoRopePermutation(const at::Tensor& w, int64_t heads) {
  const int64_t rows = w.size(0);
  return w.view({heads, rows / heads / 2, 2, -1}).transpose(1, 2).reshape(w.sizes());
}

}  // namespace

absl::StatusOr<LoadedModel> LoadModel(const std::string& path, const LoadOptions& options) {
  if (options.dtype != c10::kFloat && options.dtype != c10::kBFloat16) {
    return absl::InvalidArgumentError("compute dtype must be float32 or bfloat16");
  }
  if (!absl::EndsWith(path, ".gguf")) {
    return absl::UnimplementedError(
        absl::StrCat(path, ": only .gguf model files are supported by this build"));
  }
  auto gguf = formats::GgufReader::Open(path);
  if (!gguf.ok()) return gguf.status();
  const formats::GgufReader& g = **gguf;
  auto config = ModelConfigFromGguf(g);
  if (!config.ok()) return config.status();
  const ModelConfig& c = *config;

  ModelWeights w;
  absl::Status status;
  auto load = [&](const std::string& name, std::vector<int64_t> shape) -> at::Tensor {
    if (!status.ok()) return {};
    auto t = ReadTensor(g, name, std::move(shape));
    if (!t.ok()) {
      status = t.status();
      return {};
    }
    return t->to(options.dtype);
  };
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size, hd = c.head_dim;
  const int64_t q_rows = c.num_heads * hd, kv_rows = c.num_kv_heads * hd;
  const bool permuted_qk =
      c.architecture == Architecture::kLlama || c.architecture == Architecture::kMistral;

  w.embed_tokens = load("token_embd.weight", {V, H});
  w.final_norm = load("output_norm.weight", {H});
  w.lm_head = c.tie_word_embeddings ? w.embed_tokens : load("output.weight", {V, H});
  if (g.FindTensor("rope_freqs.weight") != nullptr) {
    w.rope_freq_factors = load("rope_freqs.weight", {hd / 2}).to(torch::kFloat);
  }
  for (int i = 0; i < c.num_layers && status.ok(); ++i) {
    const std::string p = absl::StrCat("blk.", i, ".");
    LayerWeights layer;
    layer.attn_norm = load(p + "attn_norm.weight", {H});
    layer.q_proj.weight = load(p + "attn_q.weight", {q_rows, H});
    layer.k_proj.weight = load(p + "attn_k.weight", {kv_rows, H});
    layer.v_proj.weight = load(p + "attn_v.weight", {kv_rows, H});
    layer.o_proj.weight = load(p + "attn_output.weight", {H, q_rows});
    if (c.attention_bias) {
      layer.q_proj.bias = load(p + "attn_q.bias", {q_rows});
      layer.k_proj.bias = load(p + "attn_k.bias", {kv_rows});
      layer.v_proj.bias = load(p + "attn_v.bias", {kv_rows});
    }
    if (c.qk_norm) {
      layer.q_norm = load(p + "attn_q_norm.weight", {hd});
      layer.k_norm = load(p + "attn_k_norm.weight", {hd});
    }
    layer.mlp_norm = load(p + "ffn_norm.weight", {H});
    layer.gate_proj.weight = load(p + "ffn_gate.weight", {I, H});
    layer.up_proj.weight = load(p + "ffn_up.weight", {I, H});
    layer.down_proj.weight = load(p + "ffn_down.weight", {H, I});
    if (!status.ok()) break;
    if (permuted_qk) {
      layer.q_proj.weight = UndoRopePermutation(layer.q_proj.weight, c.num_heads);
      layer.k_proj.weight = UndoRopePermutation(layer.k_proj.weight, c.num_kv_heads);
    }
    w.layers.push_back(std::move(layer));
  }
  if (!status.ok()) return status;

  auto spec = tokenizer::TokenizerSpecFromGguf(g);
  if (!spec.ok()) return spec.status();
  auto tok = tokenizer::BpeTokenizer::Create(std::move(*spec));
  if (!tok.ok()) return tok.status();

  LoadedModel model;
  model.transformer = std::make_unique<Transformer>(c, std::move(w));
  model.tokenizer = std::move(*tok);
  if (auto tmpl = g.GetString("tokenizer.chat_template"); tmpl.ok()) model.chat_template = *tmpl;
  const auto& ts = model.tokenizer->spec();
  if (ts.bos_id) model.bos_token = ts.tokens[*ts.bos_id];
  if (ts.eos_id) {
    model.eos_token = ts.tokens[*ts.eos_id];
    model.stop_ids.push_back(*ts.eos_id);
  }
  // End-of-turn markers of the supported chat formats also end generation (llama.cpp's EOG set).
  for (const char* text : {"<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>",
                           "<end_of_turn>", "<|end|>"}) {
    if (auto id = model.tokenizer->TokenId(text)) {
      if (std::find(model.stop_ids.begin(), model.stop_ids.end(), *id) == model.stop_ids.end()) {
        model.stop_ids.push_back(*id);
      }
    }
  }
  return model;
}

}  // namespace schism::model
