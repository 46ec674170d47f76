#include "worker/runtime/packed_gemm.h"

#include <ATen/ATen.h>
#include <dlfcn.h>

#include <limits>

namespace schism::model {
namespace {

// MKL's CBLAS enum values (mkl_cblas.h) and its LP64 packed-GEMM entry points.
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112, kPacked = 151, kBMatrix = 162;
using PackGetSizeFn = size_t (*)(int identifier, int m, int n, int k);
using PackFn = void (*)(int layout, int identifier, int trans, int m, int n, int k, float alpha,
                        const float* src, int ld, float* dest);
using ComputeFn = void (*)(int layout, int transa, int transb, int m, int n, int k, const float* a,
                           int lda, const float* b, int ldb, float beta, float* c, int ldc);

struct Mkl {
  PackGetSizeFn get_size = nullptr;
  PackFn pack = nullptr;
  ComputeFn compute = nullptr;
  bool ok() const { return get_size != nullptr && pack != nullptr && compute != nullptr; }
};

const Mkl& LookUp() {
  static const Mkl mkl = [] {
    Mkl m;
    m.get_size = reinterpret_cast<PackGetSizeFn>(dlsym(RTLD_DEFAULT, "cblas_sgemm_pack_get_size"));
    m.pack = reinterpret_cast<PackFn>(dlsym(RTLD_DEFAULT, "cblas_sgemm_pack"));
    m.compute = reinterpret_cast<ComputeFn>(dlsym(RTLD_DEFAULT, "cblas_sgemm_compute"));
    return m;
  }();
  return mkl;
}

// The row count the packing is laid out for; MKL's packed layout serves any row count (the
// products of 1 to 256 rows were checked against at::linear).
constexpr int kPackRows = 64;

bool FitsInt(int64_t v) { return v > 0 && v <= std::numeric_limits<int>::max(); }

}  // namespace

bool PackedWeight::Available() { return LookUp().ok(); }

int64_t PackedWeight::PackedBytes(int64_t out, int64_t in) {
  if (!Available() || !FitsInt(out) || !FitsInt(in)) return 0;
  return static_cast<int64_t>(
      LookUp().get_size(kBMatrix, kPackRows, static_cast<int>(out), static_cast<int>(in)));
}

std::unique_ptr<PackedWeight> PackedWeight::Pack(const at::Tensor& weight) {
  if (!Available() || !weight.defined() || weight.dim() != 2 || !weight.device().is_cpu() ||
      weight.scalar_type() != at::kFloat)
    return nullptr;
  const int64_t out = weight.size(0), in = weight.size(1);
  const int64_t bytes = PackedBytes(out, in);
  if (bytes <= 0) return nullptr;
  const at::Tensor w = weight.contiguous();
  at::Tensor packed = at::empty({bytes}, at::kByte);  // 64-byte aligned (c10's CPU allocator)
  // B = Wᵀ (in, out), given as W (out, in) row-major with trans.
  LookUp().pack(kRowMajor, kBMatrix, kTrans, kPackRows, static_cast<int>(out), static_cast<int>(in),
                1.0f, w.data_ptr<float>(), static_cast<int>(in),
                reinterpret_cast<float*>(packed.data_ptr()));
  return std::unique_ptr<PackedWeight>(new PackedWeight(out, in, std::move(packed)));
}

at::Tensor PackedWeight::Multiply(const at::Tensor& x, const at::Tensor& bias) const {
  TORCH_CHECK(x.dim() == 2 && x.size(1) == in_ && x.scalar_type() == at::kFloat &&
                  x.device().is_cpu() && FitsInt(x.size(0)),
              "PackedWeight: expected (rows, ", in_, ") float32 on the CPU");
  const at::Tensor a = x.contiguous();
  const int64_t rows = a.size(0);
  at::Tensor y;
  float beta = 0.0f;
  if (bias.defined()) {
    TORCH_CHECK(bias.numel() == out_ && bias.scalar_type() == at::kFloat, "PackedWeight: bias");
    y = bias.reshape({1, out_}).expand({rows, out_}).contiguous();
    beta = 1.0f;
  } else {
    y = at::empty({rows, out_}, a.options());
  }
  LookUp().compute(kRowMajor, kNoTrans, kPacked, static_cast<int>(rows), static_cast<int>(out_),
                   static_cast<int>(in_), a.data_ptr<float>(), static_cast<int>(in_),
                   reinterpret_cast<const float*>(packed_.data_ptr()), static_cast<int>(out_), beta,
                   y.data_ptr<float>(), static_cast<int>(out_));
  return y;
}

}  // namespace schism::model
