// Shared start-up of the benchmarks that run the real model: process environment, and the model
// path (scripts/setup's download, or --model PATH).
#ifndef SCHISM_BENCHMARKS_BENCH_MODEL_H_
#define SCHISM_BENCHMARKS_BENCH_MODEL_H_

#include <benchmark/benchmark.h>

#include <string>

#include "common/env.h"

namespace schism::bench {

inline int RunModelBenchmarks(int argc, char** argv, std::string* model_path) {
  // assign + append: GCC 12 warns falsely (-Warray-bounds) on string + a long literal here.
  model_path->assign(SCHISM_SOURCE_DIR);
  model_path->append("/models/SmolLM2-135M-Instruct.Q4_1.gguf");
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--model") *model_path = argv[i + 1];
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}

}  // namespace schism::bench

#endif  // SCHISM_BENCHMARKS_BENCH_MODEL_H_
