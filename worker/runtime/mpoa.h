// Magnitude-Preserving Orthogonal Ablation in LoRA form, exact (docs/algorithm.md#mpoa). For a
// weight W (out×in), a unit direction v in the output space and a strength λ:
//   none: A = vᵀW,  B = −λv                     W' = W + B A
//   pre:  A = vᵀŴ,  B = −λ(n∘v), Ŵ = diag(1/n)W   W' = W + B A = diag(n)(Ŵ − λvvᵀŴ)
//   full: pre, then s_i = n_i/‖W_i + B_i A‖       W' = diag(s)(W + B A)   (DoRA, rank 1)
// n are W's row norms; rows with n_i = 0 keep s_i = 1.
#ifndef SCHISM_WORKER_RUNTIME_MPOA_H_
#define SCHISM_WORKER_RUNTIME_MPOA_H_

#include <ATen/core/Tensor.h>

#include <string>

#include "absl/status/statusor.h"
#include "worker/runtime/tensor_parallel.h"

namespace schism::model {

enum class RowNormalization { kNone, kPre, kFull };

absl::StatusOr<RowNormalization> ParseRowNormalization(const std::string& name);

struct MpoaAdapter {
  at::Tensor a;      // (in)
  at::Tensor b;      // (out)
  at::Tensor scale;  // (out); undefined unless kFull
};

// `w` float32 (out, in), `v` (out) unit norm, `row_norms` (out) = ‖W_i‖ (pass W's; they are
// reused across trials). Computed in float64, returned as float32.
//
// With `tensor_parallel`, `w` is this rank's block of input columns (a row-parallel o_proj or
// down_proj) and `row_norms` are the whole rows' norms (RowNorms): A comes out as this rank's
// block of the whole A, and B and s as the whole ones (the full mode's sums over the input
// columns are summed over the ranks).
MpoaAdapter ComputeMpoaAdapter(const at::Tensor& w, const at::Tensor& row_norms,
                               const at::Tensor& v, double lambda, RowNormalization mode,
                               const TensorParallel* tensor_parallel = nullptr);

// ‖W_i‖ of `w` (out, in) in float32; with `tensor_parallel`, of the whole rows whose column
// blocks the ranks hold.
at::Tensor RowNorms(const at::Tensor& w, const TensorParallel* tensor_parallel = nullptr);

// The dense matrix the adapter stands for: diag(s)(W + b aᵀ).
at::Tensor EffectiveWeight(const at::Tensor& w, const MpoaAdapter& adapter);

}  // namespace schism::model

#endif  // SCHISM_WORKER_RUNTIME_MPOA_H_
