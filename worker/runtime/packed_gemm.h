// A float32 weight packed once into MKL's internal GEMM layout, for x·Wᵀ on the CPU.
//
// MKL's sgemm copies ("packs") the weight operand into its blocked layout on every call. For the
// 64-row products of a decode step that copy is 15% of a trial's time and the product runs at
// 133 GFLOP/s; with the weight packed once at load it runs at 194 (SmolLM2's 576x1536 layers,
// 2 cores). The packed product gives the same float32 values as at::linear from 16 rows up (the
// same kernel, without the copy; below that at::linear switches kernels, and the two agree to a
// few units in the last place). The runtime uses it at every row count: with the weights read
// from memory, as in a decode step, it beats the W·xᵀ product that few rows used before by
// 20-30% (decode_gemm_bench).
//
// MKL is not part of the torch wheel's headers, but libtorch_cpu exports its packed-GEMM entry
// points; they are looked up at run time, so a libtorch without MKL (aarch64) simply packs
// nothing.
#ifndef SCHISM_WORKER_RUNTIME_PACKED_GEMM_H_
#define SCHISM_WORKER_RUNTIME_PACKED_GEMM_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>

namespace schism::model {

class PackedWeight {
 public:
  // Whether this process's libtorch has MKL's packed GEMM.
  static bool Available();
  // Bytes the packed copy of an (out, in) weight takes (MKL pads small matrices generously).
  static int64_t PackedBytes(int64_t out, int64_t in);
  // Packs `weight` (out, in) float32 on the CPU; null when packing is unavailable or the weight
  // does not qualify.
  static std::unique_ptr<PackedWeight> Pack(const at::Tensor& weight);

  // x (rows, in) float32 on the CPU -> (rows, out) = x·Wᵀ + bias (bias (out) or undefined;
  // added inside the product, as at::linear's addmm does).
  at::Tensor Multiply(const at::Tensor& x, const at::Tensor& bias = at::Tensor()) const;

  int64_t out() const { return out_; }
  int64_t in() const { return in_; }
  int64_t bytes() const { return static_cast<int64_t>(packed_.nbytes()); }

 private:
  PackedWeight(int64_t out, int64_t in, at::Tensor packed)
      : out_(out), in_(in), packed_(std::move(packed)) {}
  int64_t out_, in_;
  at::Tensor packed_;  // uint8 buffer in MKL's layout
};

}  // namespace schism::model

#endif  // SCHISM_WORKER_RUNTIME_PACKED_GEMM_H_
