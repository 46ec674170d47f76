// Export throughput (docs/architecture.md#export-worker) on the real model: the GGUF dequantized
// and merged to a float32 / bfloat16 Hugging Face folder, reproduce.json hashes included. Reports
// source bytes read per second and output bytes written per second.
#include <ATen/ATen.h>
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <filesystem>

#include "benchmarks/bench_model.h"
#include "worker/export_job.h"
#include "worker/runtime/directions.h"

namespace {

std::string g_model;

void BM_ExportRealModel(benchmark::State& state) {
  namespace fs = std::filesystem;
  const fs::path dir =
      fs::temp_directory_path() / ("schism_export_bench_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  at::manual_seed(0);
  at::Tensor directions = at::randn({31, 576});  // SmolLM2-135M: 30 layers + embeddings, hidden 576
  directions = directions / directions.norm(2, {1}, true);
  (void)schism::model::SaveDirections((dir / "r.bin").string(), directions);
  schism::worker::ExportRequest request;
  request.source_model = g_model;
  request.directions_path = (dir / "r.bin").string();
  request.params_json = R"({"direction_scope": "global", "direction_index": 17.5,
      "attn.o_proj.max_weight": 1.0, "attn.o_proj.max_weight_position": 20, "attn.o_proj.min_weight": 0.5,
      "attn.o_proj.min_weight_distance": 30, "mlp.down_proj.max_weight": 0.8,
      "mlp.down_proj.max_weight_position": 20, "mlp.down_proj.min_weight": 0.5,
      "mlp.down_proj.min_weight_distance": 30})";
  if (state.range(0) == 1) request.merge.dtype = schism::formats::SafetensorsDtype::kBF16;
  request.destination = (dir / "out").string();
  request.overwrite = true;
  uint64_t written = 0;
  for (auto _ : state) {
    auto result = schism::worker::RunExport(request);
    if (!result.ok()) {
      state.SkipWithError(std::string(result.status().message()).c_str());
      break;
    }
    written = 0;
    for (const auto& f : result->files) written += f.bytes;
  }
  state.counters["source_MB/s"] =
      benchmark::Counter(static_cast<double>(fs::file_size(g_model)) / 1e6,
                         benchmark::Counter::kIsIterationInvariantRate);
  state.counters["written_MB/s"] =
      benchmark::Counter(written / 1e6, benchmark::Counter::kIsIterationInvariantRate);
  fs::remove_all(dir);
}
BENCHMARK(BM_ExportRealModel)
    ->Arg(0)
    ->Arg(1)
    ->ArgName("bf16")
    ->Unit(benchmark::kSecond)
    ->Iterations(2);

}  // namespace

int main(int argc, char** argv) { return schism::bench::RunModelBenchmarks(argc, argv, &g_model); }
