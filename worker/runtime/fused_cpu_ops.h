// Fused float32 CPU kernels for the decoder's small per-row steps: RMSNorm, RoPE, the trial
// adapters and a decode step's attention, each one pass over its rows split over the intra-op
// threads.
//
// Why: a 64-row decode step of SmolLM2 ran ~56 ATen kernels per layer, most of them elementwise
// ops on 64 x 576 floats. Each is below ATen's parallel grain (32768 elements), so it ran on the
// calling thread while the other core spun, and the dispatch cost as much as the arithmetic
// (the second thread idled 27% of a trial, measured with perf). These replace about 38 of those
// kernels per layer (two norms, two RoPEs, two adapters) with 6.
//
// Numerics: RoPE and the adapter's elementwise steps round exactly as the ATen expressions they
// replace (each product and sum rounded to float32, no fused multiply-add). The sums over a row
// differ from ATen's float32 reductions in their last bits: RMSNorm sums its squares in double
// (in float32 in another order than ATen's, the tiny Mixtral's logits moved 3.5e-4 from
// transformers' against 2.1e-4 in double), the adapter's aᵀx in float32 partial sums.
#ifndef SCHISM_WORKER_RUNTIME_FUSED_CPU_OPS_H_
#define SCHISM_WORKER_RUNTIME_FUSED_CPU_OPS_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace schism::model::fused {

// Whether the fused kernels serve t: a float32 tensor on the CPU.
bool Applies(const at::Tensor& t);

// Hugging Face's RMSNorm in float32: weight * (x * rsqrt(mean(x²) + eps)) over the last dim.
at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps);

// Rotary embedding of x (B, T, H, hd), all hd dims rotated (rotate-half convention), with the
// (B, 1, T, hd) tables cos and sin: x * cos + rotate_half(x) * sin. Returns (B, T, H, hd).
at::Tensor Rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

// In place on y (B, T, out): y = scale ∘ (y + b (aᵀx)) with row b's trial row_trial[b] choosing
// the rows of a (k, in), b (k, out) and scale (k, out; undefined: no scaling). Returns y.
at::Tensor Adapter(at::Tensor y, const at::Tensor& x, const at::Tensor& a, const at::Tensor& b,
                   const at::Tensor& scale, const at::Tensor& row_trial);

// Attention of a decode step: one query per row over its cache slot's first S columns.
//   q (B, 1, H, hd): the rotated queries; keys, values (slots, capacity, kv_heads, hd): a layer's
//   cache; slots: row b's cache slot; visible (B, 1, 1, S) or (B, S) bool: the key columns row
//   b's query sees (at least one); scale: the score scale (1/sqrt(hd) as SDPA's default);
//   portable_kernel: the portable loops even where an AVX-512 kernel serves (tests run both).
// Returns softmax(scale q·kᵀ over the visible columns)·v as (B, 1, H·hd). Query head h reads KV
// head h / (H / kv_heads), as SDPA's enable_gqa and Hugging Face's repeat_kv. As in SDPA, a NaN
// or +inf score makes its head's output NaN and a -inf score gets no weight.
//
// Why: ATen's CPU flash attention runs two matrix-vector products per (row, head) for a single
// query, 1152 MKL calls a layer in a 64-row SmolLM2 step, and reads each cached key and value
// once per query head. Here one task per (row, KV head) reads them once for all its query heads
// (AVX-512 where the CPU has it). Its sums run in another order than ATen's: outputs differ from
// SDPA's in their last bits (as close to float64 as SDPA's: FusedCpuOps.DecodeAttention*).
// Whether DecodeAttention has its AVX-512 kernel for head_dim on this CPU. Without it the
// decoder keeps SDPA: the portable loops lose to it from about 64 rows (decode_attention_bench,
// 64 rows, 60 columns, caches read from memory: 829 us against SDPA's 605 and AVX-512's 389).
bool DecodeAttentionHasFastKernel(int64_t head_dim);

at::Tensor DecodeAttention(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values,
                           const std::vector<int64_t>& slots, const at::Tensor& visible, int64_t S,
                           double scale, bool portable_kernel = false);

}  // namespace schism::model::fused

#endif  // SCHISM_WORKER_RUNTIME_FUSED_CPU_OPS_H_
