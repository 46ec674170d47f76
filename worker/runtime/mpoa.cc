#include "worker/runtime/mpoa.h"

#include <torch/torch.h>

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

MpoaAdapter ComputeMpoaAdapter(const at::Tensor& w, const at::Tensor& row_norms,
                               const at::Tensor& v, double lambda, RowNormalization mode) {
  torch::NoGradGuard no_grad;
  const auto W = w.to(torch::kDouble);
  const auto V = v.to(torch::kDouble);
  const auto n = row_norms.to(torch::kDouble);
  MpoaAdapter adapter;
  if (mode == RowNormalization::kNone) {
    adapter.a = torch::matmul(V, W);  // vᵀW
    adapter.b = -lambda * V;
  } else {
    // vᵀŴ = (v/n)ᵀW, with zero rows contributing nothing.
    const auto inv_n = torch::where(n > 0, 1.0 / n, torch::zeros_like(n));
    adapter.a = torch::matmul(V * inv_n, W);
    adapter.b = -lambda * (n * V);
  }
  if (mode == RowNormalization::kFull) {
    // ‖W_i + B_i A‖² = n_i² + 2 B_i (W·A)_i + B_i² ‖A‖²
    const auto wa = torch::mv(W, adapter.a);
    const auto norm_sq =
        n * n + 2 * adapter.b * wa + adapter.b * adapter.b * adapter.a.dot(adapter.a);
    const auto new_norm = torch::sqrt(torch::clamp_min(norm_sq, 0.0));
    adapter.scale =
        torch::where((n > 0) & (new_norm > 0), n / new_norm, torch::ones_like(n)).to(torch::kFloat);
  }
  adapter.a = adapter.a.to(torch::kFloat);
  adapter.b = adapter.b.to(torch::kFloat);
  return adapter;
}

at::Tensor EffectiveWeight(const at::Tensor& w, const MpoaAdapter& adapter) {
  auto out = w.to(torch::kDouble) +
             torch::outer(adapter.b.to(torch::kDouble), adapter.a.to(torch::kDouble));
  if (adapter.scale.defined()) out = adapter.scale.to(torch::kDouble).unsqueeze(1) * out;
  return out.to(torch::kFloat);
}

}  // namespace schism::model
