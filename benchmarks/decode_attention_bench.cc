// A decode step's attention (one query per row over its KV-cache slot), three ways: the fused
// kernel (fused::DecodeAttention, AVX-512 where the CPU has it), its portable loops, and
// at::scaled_dot_product_attention over the slots' view as Transformer::Forward passes it where
// no AVX-512 kernel serves (and did everywhere before).
// SmolLM2-135M's heads: 9 query heads on 3 KV heads of 64.
//   build/benchmarks/decode_attention_bench
#include <ATen/ATen.h>
#include <benchmark/benchmark.h>

#include <vector>

#include "worker/runtime/fused_cpu_ops.h"

namespace {

constexpr int64_t kHeads = 9, kKvHeads = 3, kHeadDim = 64;

// args: rows, S (columns each query reads), method (0 fused, 1 fused portable, 2 SDPA),
// layers (1: one cache, hot; 30: a model's worth cycled, each read from memory as in a step)
void BM_DecodeAttention(benchmark::State& state) {
  const int64_t rows = state.range(0), S = state.range(1), capacity = S + 32;
  const int method = static_cast<int>(state.range(2));
  at::manual_seed(0);
  std::vector<at::Tensor> keys, values;
  for (int64_t i = 0; i < state.range(3); ++i) {
    keys.push_back(at::randn({rows, capacity, kKvHeads, kHeadDim}));
    values.push_back(at::randn({rows, capacity, kKvHeads, kHeadDim}));
  }
  const at::Tensor q = at::randn({rows, 1, kHeads, kHeadDim});
  const at::Tensor visible = at::ones({rows, 1, 1, S}, at::kBool);
  std::vector<int64_t> slots(rows);
  for (int64_t b = 0; b < rows; ++b) slots[b] = b;
  const double scale = 0.125;
  size_t i = 0;
  for (auto _ : state) {
    i = (i + 1) % keys.size();
    at::Tensor y;
    if (method == 2) {
      y = at::scaled_dot_product_attention(q.transpose(1, 2),
                                           keys[i].narrow(1, 0, S).transpose(1, 2),
                                           values[i].narrow(1, 0, S).transpose(1, 2), visible, 0.0,
                                           false, scale, /*enable_gqa=*/true)
              .transpose(1, 2)
              .reshape({rows, 1, kHeads * kHeadDim});
    } else {
      y = schism::model::fused::DecodeAttention(q, keys[i], values[i], slots, visible, S, scale,
                                                /*portable_kernel=*/method == 1);
    }
    benchmark::DoNotOptimize(y.data_ptr());
  }
  // Bytes of keys and values each call reads.
  state.counters["GB/s"] = benchmark::Counter(
      2.0 * static_cast<double>(rows * S * kKvHeads * kHeadDim * sizeof(float)),
      benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

void Shapes(benchmark::internal::Benchmark* b) {
  for (int64_t rows : {1, 16, 64})
    for (int64_t S : {40, 60, 100})
      for (int method : {0, 1, 2})
        for (int layers : {1, 30}) b->Args({rows, S, method, layers});
}
BENCHMARK(BM_DecodeAttention)->Apply(Shapes)->ArgNames({"rows", "S", "method", "layers"});

}  // namespace

BENCHMARK_MAIN();
