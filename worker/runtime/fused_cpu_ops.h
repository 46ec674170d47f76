// Fused float32 CPU kernels for the decoder's small per-row steps: RMSNorm, RoPE and the trial
// adapters, each one pass over its rows split over the intra-op threads.
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

}  // namespace schism::model::fused

#endif  // SCHISM_WORKER_RUNTIME_FUSED_CPU_OPS_H_
