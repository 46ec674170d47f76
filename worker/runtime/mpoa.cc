#include "worker/runtime/mpoa.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace schism::model {

absl::StatusOr<RowNormalization> ParseRowNormalization(const std::string& name) {
  if (name == "none") return RowNormalization::kNone;
  if (name == "pre") return RowNormalization::kPre;
  if (name == "full") return RowNormalization::kFull;
  return absl::InvalidArgumentError(
      absl::StrCat("row_normalization \"", name, "\": expected none, pre or full"));
}

at::Tensor RowNorms(const at::Tensor& w, const TensorParallel* tensor_parallel) {
  c10::NoGradGuard no_grad;
  if (tensor_parallel == nullptr) return w.to(at::kFloat).norm(2, {1});
  at::Tensor squares = w.to(at::kDouble).pow(2).sum(1);
  tensor_parallel->AllReduceSum(squares);
  return squares.sqrt().to(at::kFloat);
}

MpoaAdapter ComputeMpoaAdapter(const at::Tensor& w, const at::Tensor& row_norms,
                               const at::Tensor& v, double lambda, RowNormalization mode,
                               const TensorParallel* tensor_parallel) {
  c10::NoGradGuard no_grad;
  const auto W = w.to(at::kDouble);
  const auto V = v.to(at::kDouble);
  const auto n = row_norms.to(at::kDouble);
  MpoaAdapter adapter;
  if (mode == RowNormalization::kNone) {
    adapter.a = at::matmul(V, W);  // vᵀW
    adapter.b = -lambda * V;
  } else {
    // vᵀŴ = (v/n)ᵀW, with zero rows contributing nothing.
    const auto inv_n = at::where(n > 0, 1.0 / n, at::zeros_like(n));
    adapter.a = at::matmul(V * inv_n, W);
    adapter.b = -lambda * (n * V);
  }
  if (mode == RowNormalization::kFull) {
    // ‖W_i + B_i A‖² = n_i² + 2 B_i (W·A)_i + B_i² ‖A‖²
    auto wa = at::mv(W, adapter.a);
    auto aa = adapter.a.dot(adapter.a);
    if (tensor_parallel != nullptr) {  // both sum over the input columns: one all-reduce
      at::Tensor sums = at::cat({wa, aa.view({1})});
      tensor_parallel->AllReduceSum(sums);
      wa = sums.narrow(0, 0, wa.size(0));
      aa = sums[wa.size(0)];
    }
    const auto norm_sq = n * n + 2 * adapter.b * wa + adapter.b * adapter.b * aa;
    const auto new_norm = at::sqrt(at::clamp_min(norm_sq, 0.0));
    adapter.scale =
        at::where((n > 0) & (new_norm > 0), n / new_norm, at::ones_like(n)).to(at::kFloat);
  }
  adapter.a = adapter.a.to(at::kFloat);
  adapter.b = adapter.b.to(at::kFloat);
  return adapter;
}

at::Tensor EffectiveWeight(const at::Tensor& w, const MpoaAdapter& adapter) {
  auto out = w.to(at::kDouble) + at::outer(adapter.b.to(at::kDouble), adapter.a.to(at::kDouble));
  if (adapter.scale.defined()) out = adapter.scale.to(at::kDouble).unsqueeze(1) * out;
  return out.to(at::kFloat);
}

}  // namespace schism::model
