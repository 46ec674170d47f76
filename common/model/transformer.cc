#include "common/model/transformer.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>

namespace schism::model {
namespace {

at::Tensor Linear(const at::Tensor& x, const LinearWeights& w) {
  return w.bias.defined() ? torch::nn::functional::linear(x, w.weight, w.bias)
                          : torch::nn::functional::linear(x, w.weight);
}

// Hugging Face's RMSNorm: normalize in float32, cast back, then scale.
at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  auto xf = x.to(torch::kFloat);
  auto normed = xf * torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * normed.to(x.scalar_type());
}

// y = s ∘ (y + b (aᵀx)) for each row's trial; a no-op without adapters.
at::Tensor ApplyAdapter(at::Tensor y, const at::Tensor& x, const ComponentAdapters* adapter,
                        const at::Tensor& row_trial) {
  if (adapter == nullptr || !adapter->a.defined()) return y;
  const auto a = adapter->a.index_select(0, row_trial).unsqueeze(1).to(x.scalar_type());  // (B,1,in)
  const auto b = adapter->b.index_select(0, row_trial).unsqueeze(1).to(y.scalar_type());  // (B,1,out)
  y = y + (x * a).sum(-1, /*keepdim=*/true) * b;
  if (adapter->scale.defined()) {
    y = y * adapter->scale.index_select(0, row_trial).unsqueeze(1).to(y.scalar_type());
  }
  return y;
}

at::Tensor RotateHalf(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

}  // namespace

Transformer::Transformer(ModelConfig config, ModelWeights weights)
    : config_(std::move(config)), weights_(std::move(weights)) {
  const int64_t half = config_.head_dim / 2;
  auto exponents = torch::arange(0, half, torch::kDouble) * 2.0 / config_.head_dim;
  auto inv_freq = 1.0 / torch::pow(config_.rope_theta, exponents);
  if (weights_.rope_freq_factors.defined()) {
    inv_freq = inv_freq / weights_.rope_freq_factors.to(torch::kDouble);
  }
  inv_freq_ = inv_freq.to(torch::kFloat);
}

at::Tensor Transformer::Attention(const LayerWeights& layer, const at::Tensor& x,
                                  const at::Tensor& cos, const at::Tensor& sin,
                                  const at::Tensor& bias, at::Tensor* cached_k,
                                  at::Tensor* cached_v, const ComponentAdapters* o_adapter,
                                  const at::Tensor& row_trial) const {
  const int64_t B = x.size(0), T = x.size(1);
  const int64_t nh = config_.num_heads, nkv = config_.num_kv_heads, hd = config_.head_dim;
  auto q = Linear(x, layer.q_proj).view({B, T, nh, hd}).transpose(1, 2);
  auto k = Linear(x, layer.k_proj).view({B, T, nkv, hd}).transpose(1, 2);
  auto v = Linear(x, layer.v_proj).view({B, T, nkv, hd}).transpose(1, 2);
  if (config_.qk_norm) {
    q = RmsNorm(q, layer.q_norm, config_.rms_norm_eps);
    k = RmsNorm(k, layer.k_norm, config_.rms_norm_eps);
  }
  q = q * cos + RotateHalf(q) * sin;
  k = k * cos + RotateHalf(k) * sin;
  if (cached_k->defined()) {
    k = torch::cat({*cached_k, k}, 2);
    v = torch::cat({*cached_v, v}, 2);
  }
  *cached_k = k;
  *cached_v = v;
  if (nh != nkv) {
    k = k.repeat_interleave(nh / nkv, 1);
    v = v.repeat_interleave(nh / nkv, 1);
  }
  auto scores = torch::matmul(q.to(torch::kFloat), k.to(torch::kFloat).transpose(-1, -2)) /
                    std::sqrt(static_cast<double>(hd)) +
                bias;
  auto probs = torch::softmax(scores, -1).to(v.scalar_type());
  auto out = torch::matmul(probs, v).transpose(1, 2).reshape({B, T, nh * hd});
  return ApplyAdapter(Linear(out, layer.o_proj), out, o_adapter, row_trial);
}

ForwardOutput Transformer::Forward(const at::Tensor& input_ids, const at::Tensor& attention_mask,
                                   KvCache* cache, bool capture_hidden_states,
                                   const AdapterBatch* adapters) const {
  torch::NoGradGuard no_grad;
  const int64_t T = input_ids.size(1);
  if (cache->keys.empty()) {
    cache->keys.resize(config_.num_layers);
    cache->values.resize(config_.num_layers);
  }
  auto mask = attention_mask.to(torch::kLong);
  cache->attention_mask = cache->attention_mask.defined()
                              ? torch::cat({cache->attention_mask, mask}, 1)
                              : mask;
  const at::Tensor& full_mask = cache->attention_mask;
  const int64_t S = full_mask.size(1);

  // Positions count real tokens only, so left padding does not shift RoPE (as HF generate).
  auto positions = (full_mask.cumsum(1) - 1).clamp_min(0).narrow(1, S - T, T);
  auto freqs = positions.to(torch::kFloat).unsqueeze(-1) * inv_freq_.view({1, 1, -1});
  auto emb = torch::cat({freqs, freqs}, -1).unsqueeze(1);  // (B, 1, T, hd)
  const auto dtype = weights_.embed_tokens.scalar_type();
  auto cos = emb.cos().to(dtype), sin = emb.sin().to(dtype);

  // Additive attention bias (B, 1, T, S): causal and key padding. A finite minimum keeps fully
  // masked rows (queries on padding) from producing NaN.
  auto query_pos = torch::arange(S - T, S, torch::kLong).view({T, 1});
  auto key_pos = torch::arange(S, torch::kLong).view({1, S});
  auto allowed = (key_pos <= query_pos).unsqueeze(0) & full_mask.unsqueeze(1).to(torch::kBool);
  auto bias = torch::zeros(allowed.sizes(), torch::kFloat)
                  .masked_fill(allowed.logical_not(), std::numeric_limits<float>::lowest())
                  .unsqueeze(1);

  ForwardOutput out;
  auto h = weights_.embed_tokens.index_select(0, input_ids.reshape(-1))
               .view({input_ids.size(0), T, -1});
  auto capture = [&](const at::Tensor& states) {
    if (capture_hidden_states) out.hidden_states.push_back(states.select(1, T - 1).to(torch::kFloat));
  };
  capture(h);
  for (int i = 0; i < config_.num_layers; ++i) {
    const LayerWeights& layer = weights_.layers[i];
    const ComponentAdapters* o_adapter = adapters ? &adapters->o_proj[i] : nullptr;
    const ComponentAdapters* down_adapter = adapters ? &adapters->down_proj[i] : nullptr;
    const at::Tensor row_trial = adapters ? adapters->row_trial : at::Tensor();
    h = h + Attention(layer, RmsNorm(h, layer.attn_norm, config_.rms_norm_eps), cos, sin, bias,
                      &cache->keys[i], &cache->values[i], o_adapter, row_trial);
    auto m = RmsNorm(h, layer.mlp_norm, config_.rms_norm_eps);
    auto act = torch::silu(Linear(m, layer.gate_proj)) * Linear(m, layer.up_proj);
    h = h + ApplyAdapter(Linear(act, layer.down_proj), act, down_adapter, row_trial);
    if (i + 1 < config_.num_layers) capture(h);
  }
  auto last = RmsNorm(h.select(1, T - 1), weights_.final_norm, config_.rms_norm_eps);
  if (capture_hidden_states) out.hidden_states.push_back(last.to(torch::kFloat));
  out.last_logits = torch::nn::functional::linear(last, weights_.lm_head).to(torch::kFloat);
  return out;
}

}  // namespace schism::model
