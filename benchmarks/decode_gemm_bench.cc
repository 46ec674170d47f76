// The products of a decode step at each row count, three ways: MKL's packed weight (what the
// runtime uses above kWeightMajorRows), at::linear (x·Wᵀ, MKL packs W per call) and W·xᵀ
// (at::mm streaming W as it is, the runtime's path for few rows). SmolLM2-135M's shapes.
//   build/benchmarks/decode_gemm_bench
#include <ATen/ATen.h>
#include <benchmark/benchmark.h>

#include <memory>

#include "worker/runtime/packed_gemm.h"

namespace {

// args: rows, out, in, method (0 packed, 1 linear, 2 weight-major), weights (1: the same
// weight every time, hot in cache; 30: a model's worth, cycled, each read from memory)
void BM_DecodeGemm(benchmark::State& state) {
  const int64_t rows = state.range(0), out = state.range(1), in = state.range(2);
  const int method = static_cast<int>(state.range(3));
  at::manual_seed(0);
  std::vector<at::Tensor> w;
  std::vector<std::unique_ptr<schism::model::PackedWeight>> packed;
  for (int64_t i = 0; i < state.range(4); ++i) {
    w.push_back(at::randn({out, in}));
    if (method != 0) continue;
    packed.push_back(schism::model::PackedWeight::Pack(w.back()));
    if (packed.back() == nullptr) {
      state.SkipWithError("no MKL packed GEMM in this libtorch");
      return;
    }
  }
  const at::Tensor x = at::randn({rows, in});
  size_t i = 0;
  for (auto _ : state) {
    i = (i + 1) % w.size();
    at::Tensor y = method == 0   ? packed[i]->Multiply(x)
                   : method == 1 ? at::linear(x, w[i])
                                 : at::mm(w[i], x.t()).t().contiguous();
    benchmark::DoNotOptimize(y.data_ptr());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * static_cast<double>(rows * out * in),
                                                 benchmark::Counter::kIsIterationInvariantRate,
                                                 benchmark::Counter::kIs1000);
}

void Shapes(benchmark::internal::Benchmark* b) {
  for (int64_t rows : {1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64})
    for (auto [out, in] : {std::pair<int64_t, int64_t>{1536, 576}, {576, 1536}, {576, 576}})
      for (int method : {0, 1, 2})
        for (int weights : {1, 30}) b->Args({rows, out, in, method, weights});
}
BENCHMARK(BM_DecodeGemm)->Apply(Shapes)->ArgNames({"rows", "out", "in", "method", "weights"});

}  // namespace

BENCHMARK_MAIN();
