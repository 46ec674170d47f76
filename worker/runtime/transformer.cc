#include "worker/runtime/transformer.h"

#include <ATen/ATen.h>
#include <ATen/cpu/Utils.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <vector>

#include "worker/runtime/fused_cpu_ops.h"
#include "worker/runtime/intra_op_parallel.h"

#ifdef SCHISM_WITH_CUDA_KERNELS
#include "worker/runtime/cuda/nf4_kernels.h"
#endif

namespace schism::model {
namespace {

using at::indexing::Slice;

// Rows up to which a CPU product with a weight that is not pre-packed runs as W·xᵀ: MKL packs the
// weight operand of every x·Wᵀ call, and for the few rows of a decode step that copy costs as
// much as the product; W·xᵀ streams W as it is (measured on 2 cores: 25-35% faster at 32 rows,
// 1.5x on a 49k-row lm_head).
constexpr int64_t kWeightMajorRows = 32;

at::Tensor MatmulWeightT(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  const int64_t in = x.size(-1), rows = x.numel() / in;
  if (x.device().is_cpu() && rows <= kWeightMajorRows) {
    auto sizes = x.sizes().vec();
    sizes.back() = weight.size(0);
    auto y = at::mm(weight, x.reshape({rows, in}).t()).t();
    if (bias.defined()) y = y + bias;
    return y.contiguous().view(sizes);
  }
  return bias.defined() ? at::linear(x, weight, bias) : at::linear(x, weight);
}

at::Tensor Linear(const at::Tensor& x, const LinearWeights& w) {
  if (w.mkl_packed != nullptr && x.device().is_cpu() && x.scalar_type() == at::kFloat) {
    const int64_t in = x.size(-1), rows = x.numel() / in;
    // Pre-packed beats W·xᵀ at every row count: on 2 cores, with each weight read from memory
    // as in a decode step (decode_gemm_bench, weights:30), 1536x576: 106 vs 286 us at 2 rows,
    // 246 vs 359 at 16, 325 vs 410 at 32 (one row: the same, 88 vs 86).
    if (rows > 0) {
      auto sizes = x.sizes().vec();
      sizes.back() = w.mkl_packed->out();
      return w.mkl_packed->Multiply(x.reshape({rows, in}), w.bias).view(sizes);
    }
  }
#ifdef SCHISM_WITH_CUDA_KERNELS
  // A decode step on a 4-bit CUDA worker reads the codes once, without a dense copy.
  if (!w.weight.defined() && x.is_cuda()) {
    const int64_t in = x.size(-1), rows = x.numel() / in;
    if (rows <= cuda::kNf4GemvMaxRows && in % kNf4BlockSize == 0 && w.nf4.shape.size() == 2) {
      auto sizes = x.sizes().vec();
      sizes.back() = w.nf4.shape[0];
      auto y = cuda::Nf4Gemv(x.reshape({rows, in}), w.nf4);
      if (w.bias.defined()) y = y + w.bias;
      return y.view(sizes);
    }
  }
#endif
  return MatmulWeightT(x, DenseWeight(w, x.scalar_type()), w.bias);
}

// Hugging Face's RMSNorm: normalize in float32, cast back, then scale.
at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  if (fused::Applies(x) && fused::Applies(weight)) return fused::RmsNorm(x, weight, eps);
  auto xf = x.to(at::kFloat);
  auto normed = xf * at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * normed.to(x.scalar_type());
}

// Gemma's RMSNorm: normalize and scale by (1 + w), both in float32, then cast back.
at::Tensor GemmaRmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  auto xf = x.to(at::kFloat);
  auto normed = xf * at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return (normed * (weight.to(at::kFloat) + 1.0)).to(x.scalar_type());
}

// y = s ∘ (y + b (aᵀx)) for each row's trial; a no-op without adapters.
at::Tensor ApplyAdapter(at::Tensor y, const at::Tensor& x, const ComponentAdapters* adapter,
                        const at::Tensor& row_trial) {
  if (adapter == nullptr || !adapter->a.defined()) return y;
  if (fused::Applies(y) && y.dim() == 3 && y.is_contiguous() && fused::Applies(x) &&
      fused::Applies(adapter->a) && fused::Applies(adapter->b) &&
      (!adapter->scale.defined() || fused::Applies(adapter->scale)) && row_trial.device().is_cpu())
    return fused::Adapter(y, x, adapter->a, adapter->b, adapter->scale, row_trial);
  const auto a =
      adapter->a.index_select(0, row_trial).unsqueeze(1).to(x.scalar_type());  // (B,1,in)
  const auto b =
      adapter->b.index_select(0, row_trial).unsqueeze(1).to(y.scalar_type());  // (B,1,out)
  y = y + (x * a).sum(-1, /*keepdim=*/true) * b;
  if (adapter->scale.defined()) {
    y = y * adapter->scale.index_select(0, row_trial).unsqueeze(1).to(y.scalar_type());
  }
  return y;
}

// A mixture-of-experts MLP on m (B, T, H): softmax router in float32, top-k experts per token
// (renormalized when the config says so), each expert's SwiGLU output scaled by its weight and
// summed; each token's trial (row_trial of its row) adapts every expert's down projection.
at::Tensor MoeMlp(const at::Tensor& m, const LayerWeights& layer, const ModelConfig& c,
                  const std::vector<ComponentAdapters>* adapters, const at::Tensor& row_trial) {
  const int64_t B = m.size(0), T = m.size(1), H = m.size(2), N = B * T;
  const at::Tensor x = m.reshape({N, H});
  const at::Tensor probs = at::softmax(at::linear(x, layer.router).to(at::kFloat), -1);
  auto [top_weight, top_expert] = at::topk(probs, c.experts_per_token, -1);
  if (c.norm_topk_prob) top_weight = top_weight / top_weight.sum(-1, /*keepdim=*/true);
  top_weight = top_weight.to(x.scalar_type());
  // Group the (token, choice) pairs by expert on the host: one gather per expert that is used.
  const at::Tensor experts_cpu = top_expert.to(at::kCPU).contiguous();
  const auto acc = experts_cpu.accessor<int64_t, 2>();
  std::vector<std::vector<int64_t>> tokens(c.num_experts), choices(c.num_experts);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t j = 0; j < c.experts_per_token; ++j) {
      tokens[acc[n][j]].push_back(n);
      choices[acc[n][j]].push_back(n * c.experts_per_token + j);
    }
  }
  const at::Tensor token_trial =
      adapters != nullptr && row_trial.defined() ? row_trial.repeat_interleave(T) : at::Tensor();
  const auto index_options = at::TensorOptions().dtype(at::kLong).device(x.device());
  at::Tensor out = at::zeros_like(x);
  for (int64_t e = 0; e < c.num_experts; ++e) {
    if (tokens[e].empty()) continue;
    const ExpertWeights& expert = layer.experts[e];
    const at::Tensor token_index = at::tensor(tokens[e], at::kLong).to(index_options.device());
    const at::Tensor xe = x.index_select(0, token_index);
    const at::Tensor act = at::silu(Linear(xe, expert.gate_proj)) * Linear(xe, expert.up_proj);
    at::Tensor y = Linear(act, expert.down_proj);
    if (token_trial.defined()) {
      y = ApplyAdapter(y.unsqueeze(1), act.unsqueeze(1), &(*adapters)[e],
                       token_trial.index_select(0, token_index))
              .squeeze(1);
    }
    const at::Tensor weight =
        top_weight.reshape(-1).index_select(0, at::tensor(choices[e], at::kLong).to(x.device()));
    out.index_add_(0, token_index, y * weight.unsqueeze(-1));
  }
  return out.view({B, T, H});
}

// bfloat16 products in hardware (AVX512-BF16 or AMX), not emulated: only then does a bfloat16
// screen of the vocabulary pay.
bool CpuHasBfloat16Products() {
#if defined(__x86_64__) && defined(__GNUC__)
  return __builtin_cpu_supports("avx512bf16") || __builtin_cpu_supports("amx-bf16");
#else
  return false;
#endif
}

at::Tensor RotateHalf(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

// RoPE on the leading cos.size(-1) dims of each head (all of them unless partial rotary).
at::Tensor ApplyRope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t rotary = cos.size(-1), hd = x.size(-1);
  if (rotary == hd) return x * cos + RotateHalf(x) * sin;
  const at::Tensor r = x.narrow(-1, 0, rotary);
  return at::cat({r * cos + RotateHalf(r) * sin, x.narrow(-1, rotary, hd - rotary)}, -1);
}

// RoPE on heads laid out (B, T, H, hd), as the projections give them: one fused pass on float32
// CPU tensors when every dim rotates, else ApplyRope on the (B, H, T, hd) view.
at::Tensor ApplyRopeToHeads(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  if (fused::Applies(x) && cos.size(-1) == x.size(-1)) return fused::Rope(x, cos, sin);
  return ApplyRope(x.transpose(1, 2), cos, sin).transpose(1, 2);
}

// The rows of `t` (dim 0) that belong to `slots`: a view when the slots are consecutive (the
// decode step's common case), a gather otherwise.
at::Tensor SlotRows(const at::Tensor& t, const std::vector<int64_t>& slots,
                    const at::Tensor& slot_index, bool consecutive) {
  return consecutive ? t.narrow(0, slots.front(), static_cast<int64_t>(slots.size()))
                     : t.index_select(0, slot_index);
}

}  // namespace

at::Tensor DenseWeight(const LinearWeights& w, c10::ScalarType dtype) {
  if (w.weight.defined()) return w.weight.scalar_type() == dtype ? w.weight : w.weight.to(dtype);
  TORCH_CHECK(w.nf4.packed.defined(), "linear layer without weights");
  return DequantizeNf4(w.nf4, dtype);
}

KvCache::KvCache(const ModelConfig& config, int64_t kv_heads, int64_t slots, int64_t capacity,
                 const at::TensorOptions& options) {
  for (int i = 0; i < config.num_layers; ++i) {
    keys.push_back(at::zeros({slots, capacity, kv_heads, config.head_dim}, options));
    values.push_back(at::zeros({slots, capacity, kv_heads, config.head_dim}, options));
  }
  valid = at::zeros({slots, capacity}, options.dtype(at::kBool));
  column_position = at::zeros({slots, capacity}, options.dtype(at::kLong));
  length.assign(slots, 0);
  positions.assign(slots, 0);
}

void KvCache::Reset(int64_t slot) {
  valid[slot].fill_(false);
  length[slot] = 0;
  positions[slot] = 0;
}

void KvCache::CopySlotFrom(const KvCache& source, int64_t from, int64_t to) {
  const int64_t n = source.length[from];
  TORCH_CHECK(n <= capacity(), "KvCache: slot of ", n, " columns does not fit in ", capacity());
  for (size_t l = 0; l < keys.size(); ++l) {
    keys[l][to].narrow(0, 0, n).copy_(source.keys[l][from].narrow(0, 0, n));
    values[l][to].narrow(0, 0, n).copy_(source.values[l][from].narrow(0, 0, n));
  }
  valid[to].fill_(false);
  valid[to].narrow(0, 0, n).copy_(source.valid[from].narrow(0, 0, n));
  column_position[to].narrow(0, 0, n).copy_(source.column_position[from].narrow(0, 0, n));
  length[to] = n;
  positions[to] = source.positions[from];
}

Transformer::Transformer(ModelConfig config, ModelWeights weights,
                         std::shared_ptr<TensorParallel> tensor_parallel)
    : config_(std::move(config)),
      weights_(std::move(weights)),
      tensor_parallel_(std::move(tensor_parallel)) {
  const int64_t rotary = config_.RotaryDim(), half = rotary / 2;
  const auto device = weights_.embed_tokens.device();
  auto exponents = at::arange(0, half, at::kDouble) * 2.0 / rotary;
  auto inv_freq = 1.0 / at::pow(config_.rope_theta, exponents) / config_.rope_linear_factor;
  if (weights_.rope_freq_factors.defined()) {
    inv_freq = inv_freq / weights_.rope_freq_factors.to(at::kCPU, at::kDouble);
  }
  inv_freq_ = inv_freq.to(device, at::kFloat);
  if (config_.rope_local_theta > 0) {
    local_inv_freq_ = (1.0 / at::pow(config_.rope_local_theta, exponents)).to(device, at::kFloat);
  }
  const at::Tensor& lm_head = weights_.lm_head;
  if (lm_head.defined() && lm_head.device().is_cpu() && lm_head.scalar_type() == at::kFloat &&
      lm_head.dim() == 2 && CpuHasBfloat16Products()) {
    c10::NoGradGuard no_grad;
    // Linux hands AMX tiles to a process only on request; oneDNN's bfloat16 products use
    // them once granted (else AVX512-BF16, about half as fast here).
    at::cpu::init_amx();
    lm_head_screen_ = lm_head.to(at::kBFloat16).contiguous();
    lm_head_row_norms_ = lm_head.norm(2, {1}).contiguous();
  }
  // The decoder's dense float32 CPU weights in MKL's layout, MLP first (three quarters of the
  // products), within kMaxPackedBytes. Weights copied from another model may carry its packed
  // copies: they are dropped first, so only weights packed here are ever multiplied.
  for (LayerWeights& layer : weights_.layers) {
    for (LinearWeights* w : {&layer.q_proj, &layer.k_proj, &layer.v_proj, &layer.o_proj,
                             &layer.gate_proj, &layer.up_proj, &layer.down_proj})
      w->mkl_packed.reset();
  }
  if (device.is_cpu() && weights_.embed_tokens.scalar_type() == at::kFloat &&
      PackedWeight::Available()) {
    auto pack = [&](LinearWeights& w) {
      if (!w.weight.defined() || w.weight.scalar_type() != at::kFloat || w.weight.dim() != 2)
        return;
      const int64_t bytes = PackedWeight::PackedBytes(w.weight.size(0), w.weight.size(1));
      if (bytes <= 0 || mkl_packed_bytes_ + bytes > kMaxPackedBytes) return;
      w.mkl_packed = PackedWeight::Pack(w.weight);
      if (w.mkl_packed != nullptr) mkl_packed_bytes_ += w.mkl_packed->bytes();
    };
    for (LayerWeights& layer : weights_.layers) {
      for (LinearWeights* w : {&layer.gate_proj, &layer.up_proj, &layer.down_proj}) pack(*w);
    }
    for (LayerWeights& layer : weights_.layers) {
      for (LinearWeights* w : {&layer.q_proj, &layer.k_proj, &layer.v_proj, &layer.o_proj})
        pack(*w);
    }
  }
}

at::Tensor Transformer::LastLogits(const at::Tensor& last) const {
  at::Tensor logits = MatmulWeightT(last, weights_.lm_head, at::Tensor()).to(at::kFloat);
  if (config_.final_logit_softcap > 0) {
    logits = at::tanh(logits / config_.final_logit_softcap) * config_.final_logit_softcap;
  }
  return logits;
}

at::Tensor Transformer::LogitsOfResidual(const at::Tensor& residual) const {
  c10::NoGradGuard no_grad;
  const at::Tensor normed = config_.gemma_norms
                                ? GemmaRmsNorm(residual, weights_.final_norm, config_.rms_norm_eps)
                                : RmsNorm(residual, weights_.final_norm, config_.rms_norm_eps);
  return LastLogits(normed);
}

at::Tensor Transformer::GreedyTokens(const at::Tensor& last) const {
  c10::NoGradGuard no_grad;
  auto full_argmax = [&] { return LastLogits(last).argmax(-1).to(at::kCPU, at::kLong); };
  if (!screens_lm_head() || last.scalar_type() != at::kFloat || last.dim() != 2)
    return full_argmax();
  const int64_t rows = last.size(0), hidden = last.size(1), vocab = lm_head_screen_.size(0);
  // screen = bf16(W)·bf16(x) summed in float32, rounded to bfloat16; (vocab, rows), as the
  // product streams W. Against the float32 product a screened logit s is off by at most
  // C + u·|s|, C = (2u + u² + 2nγ)·|w|·|x| (both operands rounded, both products' float32 sums),
  // u = 2^-9 the bfloat16 unit roundoff (2^-8 here, to spare), γ = 2^-24.
  const at::Tensor screen =
      at::mm(lm_head_screen_, last.to(at::kBFloat16).t()).to(at::kFloat).contiguous();
  constexpr double u = 1.0 / 256, gamma = 1.0 / (1 << 24);
  const double c = 2 * u + u * u + 2.0 * static_cast<double>(hidden) * gamma * (1 + 2 * u);
  const at::Tensor x_norms = last.norm(2, {1}).to(at::kCPU, at::kDouble).contiguous();
  const float* s = screen.data_ptr<float>();
  const float* norm = lm_head_row_norms_.data_ptr<float>();
  // Each screened logit's bound E = (C + u|s|)/(1-u), C = c·|w_v|·|x| (Cauchy-Schwarz): the
  // float32 logit lies in [s - E, s + E]. The argmax's upper end reaches the highest lower end.
  // Single precision suffices for the bounds themselves: 1e-3 of slack covers their rounding.
  const double slack = (1 + 1e-3) / (1 - u);
  const float relative = static_cast<float>(u * slack);
  std::vector<float> per_norm(rows);
  for (int64_t r = 0; r < rows; ++r) {
    per_norm[r] = static_cast<float>(c * x_norms.data_ptr<double>()[r] * slack);
    if (!std::isfinite(per_norm[r])) return full_argmax();  // NaN or infinite states
  }
  // Two passes over the (vocab, rows) screen, each split over the intra-op threads by token
  // ranges: the highest lower end per row, then the tokens whose upper end reaches it.
  auto bound = [&](const float* sv, int64_t r, float nv) {
    return per_norm[r] * nv + relative * std::abs(sv[r]);
  };
  constexpr int64_t kGrain = 4096;
  const int64_t chunks = (vocab + kGrain - 1) / kGrain;
  std::vector<std::vector<float>> chunk_best(chunks);
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      std::vector<float> best(rows, -std::numeric_limits<float>::infinity());
      for (int64_t v = chunk * kGrain; v < std::min(vocab, (chunk + 1) * kGrain); ++v) {
        const float* sv = s + v * rows;
        for (int64_t r = 0; r < rows; ++r) {
          const float low = sv[r] - bound(sv, r, norm[v]);
          best[r] = low > best[r] ? low : best[r];
        }
      }
      chunk_best[chunk] = std::move(best);
    }
  });
  std::vector<float> lowest_best(rows, -std::numeric_limits<float>::infinity());
  for (const auto& best : chunk_best) {
    for (int64_t r = 0; r < rows; ++r) lowest_best[r] = std::max(lowest_best[r], best[r]);
  }
  std::vector<std::vector<std::pair<int64_t, int64_t>>> chunk_candidates(chunks);
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      for (int64_t v = chunk * kGrain; v < std::min(vocab, (chunk + 1) * kGrain); ++v) {
        const float* sv = s + v * rows;
        for (int64_t r = 0; r < rows; ++r) {
          if (sv[r] + bound(sv, r, norm[v]) >= lowest_best[r])
            chunk_candidates[chunk].push_back({r, v});
        }
      }
    }
  });
  std::vector<int64_t> candidate_row, candidate_token;  // token-major: ids ascend in each row
  for (const auto& found : chunk_candidates) {
    for (const auto& [r, v] : found) {
      candidate_row.push_back(r);
      candidate_token.push_back(v);
    }
  }
  // A flat screen (states near zero): nothing to gain over the full product.
  if (candidate_row.size() > static_cast<size_t>(64 * rows + 1024)) return full_argmax();
  const auto index = [&](const std::vector<int64_t>& ids) {
    return at::tensor(ids, at::kLong).to(last.device());
  };
  at::Tensor exact = (weights_.lm_head.index_select(0, index(candidate_token)) *
                      last.index_select(0, index(candidate_row)))
                         .sum(-1);
  if (config_.final_logit_softcap > 0) {
    exact = at::tanh(exact / config_.final_logit_softcap) * config_.final_logit_softcap;
  }
  const at::Tensor values = exact.to(at::kCPU).contiguous();
  const float* value = values.data_ptr<float>();
  at::Tensor tokens = at::full({rows}, -1, at::kLong);
  int64_t* out = tokens.data_ptr<int64_t>();
  std::vector<float> top(rows, 0.0f);
  for (size_t i = 0; i < candidate_row.size(); ++i) {  // ties go to the lowest id
    const int64_t r = candidate_row[i];
    if (out[r] < 0 || value[i] > top[r]) {
      out[r] = candidate_token[i];
      top[r] = value[i];
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    if (out[r] < 0 || std::isnan(top[r])) return full_argmax();
  }
  return tokens;
}

KvCache Transformer::NewCache(int64_t slots, int64_t capacity) const {
  return KvCache(config_, local_kv_heads(), slots, capacity, options());
}

ForwardOutput Transformer::Forward(const at::Tensor& input_ids, const at::Tensor& attention_mask,
                                   KvCache* cache, const std::vector<int64_t>& slots,
                                   const ForwardOptions& options) const {
  c10::NoGradGuard no_grad;
  const bool capture_hidden_states = options.capture_hidden_states;
  const AdapterBatch* adapters = options.adapters;
  const ForwardStart* start = options.start;
  const int first_layer = start != nullptr ? start->first_layer : 0;
  TORCH_CHECK(start == nullptr || (!capture_hidden_states && !options.capture_layer_inputs),
              "Forward: a start above the embeddings has no lower states to capture");
  TORCH_CHECK(first_layer >= 0 && first_layer <= config_.num_layers, "Forward: bad first layer ",
              first_layer);
  const int64_t B = input_ids.size(0), T = input_ids.size(1);
  const int64_t nh = local_heads(), nkv = local_kv_heads(), hd = config_.head_dim;
  const int64_t capacity = cache->capacity();
  TORCH_CHECK(static_cast<int64_t>(slots.size()) == B, "Forward: one slot per row");
  const auto device = weights_.embed_tokens.device();
  const auto dtype = weights_.embed_tokens.scalar_type();

  // Host-side bookkeeping: where each row's T columns go, its RoPE positions, the causal limit.
  const at::Tensor mask_cpu = attention_mask.to(at::kCPU, at::kLong).contiguous();
  const auto mask_acc = mask_cpu.accessor<int64_t, 2>();
  std::vector<int64_t> flat_columns(B * T), positions(B * T), query_columns(B * T);
  bool consecutive = true;
  int64_t S = 0;  // columns the attention reads (the longest row after this step)
  for (int64_t b = 0; b < B; ++b) {
    const int64_t s = slots[b], start = cache->length[s];
    TORCH_CHECK(start + T <= capacity, "Forward: slot ", s, " is full (", capacity, " columns)");
    consecutive &= s == slots.front() + b;
    int64_t pos = cache->positions[s];
    for (int64_t t = 0; t < T; ++t) {
      flat_columns[b * T + t] = s * capacity + start + t;
      query_columns[b * T + t] = start + t;
      positions[b * T + t] = pos;  // left padding does not shift RoPE (as HF generate)
      if (mask_acc[b][t] != 0) ++pos;
    }
    S = std::max(S, start + T);
  }
  auto to_device = [&](const std::vector<int64_t>& v, std::vector<int64_t> shape) {
    return at::tensor(v, at::kLong).view(shape).to(device);
  };
  const at::Tensor flat_index = to_device(flat_columns, {B * T});
  const at::Tensor slot_index = to_device(slots, {B});
  cache->valid.view(-1).index_put_({flat_index}, mask_cpu.view(-1).to(device).to(at::kBool));
  const at::Tensor position_index = to_device(positions, {B, T});
  cache->column_position.view(-1).index_put_({flat_index}, position_index.view(-1));
  for (int64_t b = 0; b < B; ++b) {
    cache->length[slots[b]] += T;
    for (int64_t t = 0; t < T; ++t) cache->positions[slots[b]] += mask_acc[b][t] != 0;
  }

  // Attention mask (B, 1, T, S): a key column is visible to a query if it holds a real token at
  // or before the query's column; a query always sees itself, so padding rows stay finite.
  const at::Tensor query_col = to_device(query_columns, {B, T, 1});
  const at::Tensor key_col =
      at::arange(S, at::TensorOptions().dtype(at::kLong).device(device)).view({1, 1, S});
  const at::Tensor valid =
      SlotRows(cache->valid, slots, slot_index, consecutive).narrow(1, 0, S).unsqueeze(1);
  const at::Tensor visible = ((key_col <= query_col) & valid) | (key_col == query_col);
  const at::Tensor attn_mask = visible.unsqueeze(1);
  // Sliding-window layers also hide keys `sliding_window` or more positions back, measured in
  // RoPE positions (a shared prefix leaves padding between a row's prefix and its suffix).
  const bool any_sliding = std::find(config_.sliding_layers.begin(), config_.sliding_layers.end(),
                                     true) != config_.sliding_layers.end();
  at::Tensor local_mask;
  if (any_sliding) {
    const at::Tensor key_position =
        SlotRows(cache->column_position, slots, slot_index, consecutive).narrow(1, 0, S);
    const at::Tensor distance = position_index.unsqueeze(-1) - key_position.unsqueeze(1);
    local_mask = (visible & (distance < config_.sliding_window)).unsqueeze(1);
  }

  // RoPE (cos, sin) tables (B, 1, T, hd) for the global layers and, if any, the local ones.
  const at::Tensor position_f = position_index.to(at::kFloat).unsqueeze(-1);
  auto rope_tables = [&](const at::Tensor& inv_freq) {
    auto freqs = position_f * inv_freq.view({1, 1, -1});
    auto emb = at::cat({freqs, freqs}, -1).unsqueeze(1);
    return std::pair{emb.cos().to(dtype), emb.sin().to(dtype)};
  };
  const auto global_rope = rope_tables(inv_freq_);
  const auto local_rope =
      any_sliding && local_inv_freq_.defined() ? rope_tables(local_inv_freq_) : global_rope;
  const std::optional<double> attn_scale =
      config_.query_pre_attn_scalar > 0
          ? std::optional<double>(1.0 / std::sqrt(config_.query_pre_attn_scalar))
          : std::nullopt;
  auto norm = [&](const at::Tensor& x, const at::Tensor& weight) {
    return config_.gemma_norms ? GemmaRmsNorm(x, weight, config_.rms_norm_eps)
                               : RmsNorm(x, weight, config_.rms_norm_eps);
  };

  ForwardOutput out;
  at::Tensor h;
  if (start != nullptr) {
    TORCH_CHECK(start->hidden.size(0) == B && start->hidden.size(1) == T,
                "Forward: start states of the wrong shape");
    h = start->hidden.to(device, dtype);
    for (int i = 0; i < first_layer; ++i) {
      cache->keys[i]
          .view({-1, nkv * hd})
          .index_copy_(0, flat_index, start->keys[i].to(device, dtype));
      cache->values[i]
          .view({-1, nkv * hd})
          .index_copy_(0, flat_index, start->values[i].to(device, dtype));
    }
  } else {
    const at::Tensor ids = input_ids.to(device, at::kLong);
    h = weights_.embed_tokens.index_select(0, ids.reshape(-1)).view({B, T, -1});
    // Gemma: times sqrt(H) rounded to the compute dtype, as a tensor of that dtype (as HF does).
    if (config_.scale_embeddings) {
      h = h * at::scalar_tensor(std::sqrt(static_cast<double>(config_.hidden_size)), at::kFloat)
                  .to(device, dtype);
    }
  }
  auto capture = [&](const at::Tensor& states) {
    if (capture_hidden_states) out.hidden_states.push_back(states.select(1, T - 1).to(at::kFloat));
    if (options.capture_layer_inputs) out.layer_inputs.push_back(states);
  };
  capture(h);
  // A rank's o_proj and down_proj outputs are partial sums over its input columns (adapters,
  // row scales and bias included: they are linear in them, and only rank 0 holds the bias).
  auto sum_over_ranks = [&](at::Tensor partial) {
    if (tensor_parallel_ != nullptr) tensor_parallel_->AllReduceSum(partial);
    return partial;
  };
  const at::Tensor row_trial = adapters ? adapters->row_trial.to(device) : at::Tensor();
  // A decode step's single query per row: the fused CPU kernel, not SDPA's per-(row, head) calls,
  // where it has its fast kernel.
  const bool fused_decode_attention =
      T == 1 && device.is_cpu() && dtype == at::kFloat && fused::DecodeAttentionHasFastKernel(hd);
  for (int i = first_layer; i < config_.num_layers; ++i) {
    const LayerWeights& layer = weights_.layers[i];
    const bool sliding = config_.IsSliding(i);
    const auto& [cos, sin] = sliding ? local_rope : global_rope;
    // Attention.
    const auto x = norm(h, layer.attn_norm);
    auto q = Linear(x, layer.q_proj).view({B, T, nh, hd});
    auto k = Linear(x, layer.k_proj).view({B, T, nkv, hd});
    auto v = Linear(x, layer.v_proj).view({B, T, nkv, hd});
    if (config_.qk_norm) {
      q = norm(q, layer.q_norm);
      k = norm(k, layer.k_norm);
    }
    q = ApplyRopeToHeads(q, cos, sin);
    k = ApplyRopeToHeads(k, cos, sin);
    cache->keys[i].view({-1, nkv * hd}).index_copy_(0, flat_index, k.reshape({B * T, nkv * hd}));
    cache->values[i].view({-1, nkv * hd}).index_copy_(0, flat_index, v.reshape({B * T, nkv * hd}));
    const at::Tensor& mask = sliding ? local_mask : attn_mask;
    at::Tensor attn;
    if (fused_decode_attention) {
      attn = fused::DecodeAttention(q, cache->keys[i], cache->values[i], slots, mask, S,
                                    attn_scale.value_or(1.0 / std::sqrt(static_cast<double>(hd))));
    } else {
      const auto keys =
          SlotRows(cache->keys[i], slots, slot_index, consecutive).narrow(1, 0, S).transpose(1, 2);
      const auto values = SlotRows(cache->values[i], slots, slot_index, consecutive)
                              .narrow(1, 0, S)
                              .transpose(1, 2);
      attn = at::scaled_dot_product_attention(q.transpose(1, 2), keys, values, mask, 0.0, false,
                                              attn_scale, /*enable_gqa=*/nh != nkv)
                 .transpose(1, 2)
                 .reshape({B, T, nh * hd});
    }
    // The adapters act on the projections' outputs, before Gemma's post norms (as a LoRA on
    // o_proj and down_proj does in Hugging Face's Gemma 3).
    auto attn_out = sum_over_ranks(ApplyAdapter(
        Linear(attn, layer.o_proj), attn, adapters ? &adapters->o_proj[i] : nullptr, row_trial));
    h = h + (layer.post_attn_norm.defined() ? norm(attn_out, layer.post_attn_norm) : attn_out);
    // MLP.
    auto m = norm(h, layer.mlp_norm);
    at::Tensor mlp_out;
    if (!layer.experts.empty()) {
      const bool adapted = adapters != nullptr &&
                           i < static_cast<int>(adapters->expert_down_proj.size()) &&
                           !adapters->expert_down_proj[i].empty();
      mlp_out =
          MoeMlp(m, layer, config_, adapted ? &adapters->expert_down_proj[i] : nullptr, row_trial);
    } else {
      auto gate = Linear(m, layer.gate_proj);
      auto act =
          (config_.gelu_tanh ? at::gelu(gate, "tanh") : at::silu(gate)) * Linear(m, layer.up_proj);
      mlp_out = ApplyAdapter(Linear(act, layer.down_proj), act,
                             adapters ? &adapters->down_proj[i] : nullptr, row_trial);
    }
    mlp_out = sum_over_ranks(mlp_out);
    h = h + (layer.post_mlp_norm.defined() ? norm(mlp_out, layer.post_mlp_norm) : mlp_out);
    if (i + 1 < config_.num_layers) {
      capture(h);
    } else if (options.capture_layer_inputs || options.capture_final_residual) {
      out.layer_inputs.push_back(h);
    }
  }
  auto last = norm(h.select(1, T - 1), weights_.final_norm);
  // Rank 0's last states for every rank: the same logits everywhere, so the same tokens (even on
  // ranks whose replicated kernels would round differently).
  if (tensor_parallel_ != nullptr) {
    last = last.contiguous();
    tensor_parallel_->Broadcast(last);
  }
  if (capture_hidden_states) out.hidden_states.push_back(last.to(at::kFloat));
  if (options.greedy_tokens_only) {
    out.next_tokens = GreedyTokens(last);
  } else {
    out.last_logits = LastLogits(last);
  }
  return out;
}

}  // namespace schism::model
