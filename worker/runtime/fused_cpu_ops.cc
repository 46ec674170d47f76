#include "worker/runtime/fused_cpu_ops.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "worker/runtime/intra_op_parallel.h"

// Compiled with -ffp-contract=off (worker/runtime/CMakeLists.txt): a product and a sum stay two
// roundings, as in the ATen expressions these kernels replace.
namespace schism::model::fused {
namespace {

// Rows per task: about 16k floats, so a 64-row step of a 576-wide model splits over two threads
// and a single row stays on the caller.
int64_t Grain(int64_t width) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, width)); }

// Σ a[i]·b[i] in 16 interleaved float32 partial sums (vectorizable).
inline float Dot(const float* a, const float* b, int64_t n) {
  constexpr int kLanes = 16;
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) lanes[l] += a[i + l] * b[i + l];
  }
  float sum = 0;
  for (int l = 0; l < kLanes; ++l) sum += lanes[l];
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

}  // namespace

bool Applies(const at::Tensor& t) {
  return t.defined() && t.device().is_cpu() && t.scalar_type() == at::kFloat;
}

at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  const int64_t width = x.size(-1), rows = x.numel() / width;
  TORCH_CHECK(Applies(x) && Applies(weight) && weight.numel() == width,
              "fused::RmsNorm: float32 CPU operands of matching width");
  const at::Tensor xc = x.contiguous(), wc = weight.contiguous();
  at::Tensor out = at::empty_like(xc);
  const float* xp = xc.data_ptr<float>();
  const float* wp = wc.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const float epsilon = static_cast<float>(eps);
  at::parallel_for(0, rows, Grain(width), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* xr = xp + r * width;
      float* yr = op + r * width;
      double squares = 0;
      for (int64_t i = 0; i < width; ++i) squares += static_cast<double>(xr[i]) * xr[i];
      const float mean = static_cast<float>(squares) / static_cast<float>(width);
      const float inverse = 1.0f / std::sqrt(mean + epsilon);
      for (int64_t i = 0; i < width; ++i) yr[i] = wp[i] * (xr[i] * inverse);
    }
  });
  return out;
}

at::Tensor Rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  TORCH_CHECK(x.dim() == 4 && cos.dim() == 4 && Applies(x) && Applies(cos) && Applies(sin),
              "fused::Rope: float32 CPU x (B, T, H, hd) and tables (B, 1, T, hd)");
  const int64_t B = x.size(0), T = x.size(1), H = x.size(2), hd = x.size(3), half = hd / 2;
  TORCH_CHECK(hd % 2 == 0 && cos.size(0) == B && cos.size(2) == T && cos.size(3) == hd &&
                  sin.sizes() == cos.sizes(),
              "fused::Rope: tables of the wrong shape");
  const at::Tensor xc = x.contiguous(), cc = cos.contiguous(), sc = sin.contiguous();
  at::Tensor out = at::empty_like(xc);
  const float* xp = xc.data_ptr<float>();
  const float* cp = cc.data_ptr<float>();
  const float* sp = sc.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, B * T, Grain(H * hd), [&](int64_t begin, int64_t end) {
    for (int64_t bt = begin; bt < end; ++bt) {
      const float* c = cp + bt * hd;
      const float* s = sp + bt * hd;
      for (int64_t h = 0; h < H; ++h) {
        const float* xh = xp + (bt * H + h) * hd;
        float* yh = op + (bt * H + h) * hd;
        for (int64_t i = 0; i < half; ++i) yh[i] = xh[i] * c[i] + (-xh[i + half]) * s[i];
        for (int64_t i = half; i < hd; ++i) yh[i] = xh[i] * c[i] + xh[i - half] * s[i];
      }
    }
  });
  return out;
}

at::Tensor Adapter(at::Tensor y, const at::Tensor& x, const at::Tensor& a, const at::Tensor& b,
                   const at::Tensor& scale, const at::Tensor& row_trial) {
  TORCH_CHECK(y.dim() == 3 && x.dim() == 3 && Applies(y) && Applies(x) && Applies(a) &&
                  Applies(b) && (!scale.defined() || Applies(scale)) && y.is_contiguous(),
              "fused::Adapter: float32 CPU operands, y contiguous");
  const int64_t B = y.size(0), T = y.size(1), out = y.size(2), in = x.size(2), k = a.size(0);
  TORCH_CHECK(x.size(0) == B && x.size(1) == T && a.size(1) == in && b.size(0) == k &&
                  b.size(1) == out && (!scale.defined() || scale.sizes() == b.sizes()) &&
                  row_trial.numel() == B,
              "fused::Adapter: mismatched shapes");
  const at::Tensor xc = x.contiguous(), ac = a.contiguous(), bc = b.contiguous();
  const at::Tensor sc = scale.defined() ? scale.contiguous() : at::Tensor();
  const at::Tensor trials = row_trial.to(at::kCPU, at::kLong).contiguous();
  const int64_t* trial = trials.data_ptr<int64_t>();
  for (int64_t r = 0; r < B; ++r)
    TORCH_CHECK(trial[r] >= 0 && trial[r] < k, "fused::Adapter: row trial out of range");
  const float* xp = xc.data_ptr<float>();
  const float* ap = ac.data_ptr<float>();
  const float* bp = bc.data_ptr<float>();
  const float* sp = sc.defined() ? sc.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, B * T, Grain(in + out), [&](int64_t begin, int64_t end) {
    for (int64_t bt = begin; bt < end; ++bt) {
      const int64_t t = trial[bt / T];
      const float dot = Dot(xp + bt * in, ap + t * in, in);
      const float* bt_b = bp + t * out;
      float* yr = yp + bt * out;
      if (sp != nullptr) {
        const float* st = sp + t * out;
        for (int64_t o = 0; o < out; ++o) yr[o] = (yr[o] + dot * bt_b[o]) * st[o];
      } else {
        for (int64_t o = 0; o < out; ++o) yr[o] = yr[o] + dot * bt_b[o];
      }
    }
  });
  return y;
}

}  // namespace schism::model::fused
