// Throughput of the NumPy-compatible MT19937 stream the TPE sampler draws from.
#include <benchmark/benchmark.h>

#include "coordinator/random_state.h"

static void BM_RandomStateNextDouble(benchmark::State& state) {
  schism::coordinator::RandomState rng(42);
  for (auto _ : state) benchmark::DoNotOptimize(rng.NextDouble());
}
BENCHMARK(BM_RandomStateNextDouble);
