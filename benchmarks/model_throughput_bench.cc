// Prefill and decode throughput of the real model on CPU, batch 1 and 16, plus peak RSS.
//   build/benchmarks/model_throughput_bench [--model PATH]   (default: models/ from scripts/setup)
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdlib>
#include <string>

#include "benchmarks/bench_model.h"
#include "common/env.h"
#include "common/prompt_set.h"
#include "worker/runtime/generator.h"
#include "worker/runtime/model_loader.h"

namespace {

using schism::model::TokenIds;

std::string g_model_path;

const schism::model::LoadedModel& Model() {
  static const auto* model = [] {
    auto loaded = schism::model::LoadModel(g_model_path);
    if (!loaded.ok()) {
      std::fprintf(stderr, "%s\n", std::string(loaded.status().message()).c_str());
      std::exit(1);
    }
    return new schism::model::LoadedModel(std::move(*loaded));
  }();
  return *model;
}

std::vector<TokenIds> Prompts(int batch) {
  auto lines =
      schism::common::LoadPromptLines(schism::common::DefaultDataDir() + "/harmless_test.txt");
  std::vector<TokenIds> prompts;
  for (int i = 0; i < batch; ++i) {
    prompts.push_back(Model().tokenizer->Encode(
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n" +
        (*lines)[i] + "<|im_end|>\n<|im_start|>assistant\n"));
  }
  return prompts;
}

void ReportRss(benchmark::State& state) {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  state.counters["peak_rss_MiB"] = static_cast<double>(usage.ru_maxrss) / 1024.0;
}

void BM_Prefill(benchmark::State& state) {
  const auto prompts = Prompts(static_cast<int>(state.range(0)));
  size_t tokens = 0;
  for (const auto& p : prompts) tokens += p.size();
  for (auto _ : state) {
    benchmark::DoNotOptimize(schism::model::PromptForward(*Model().transformer, prompts, 2));
  }
  state.counters["tokens_per_s"] = benchmark::Counter(
      static_cast<double>(tokens), benchmark::Counter::kIsIterationInvariantRate);
  ReportRss(state);
}

// 32 greedy tokens per row, no stopping; the rate counts only the decoded tokens, with the
// prefill time measured separately above and subtracted here.
void BM_Decode(benchmark::State& state) {
  const auto prompts = Prompts(static_cast<int>(state.range(0)));
  schism::model::GreedyOptions options;
  options.max_new_tokens = 32;
  options.pad_id = 2;
  double decode_seconds = 0;
  for (auto _ : state) {
    auto t0 = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(schism::model::PromptForward(*Model().transformer, prompts, 2));
    auto t1 = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(schism::model::GreedyGenerate(*Model().transformer, prompts, options));
    auto t2 = std::chrono::steady_clock::now();
    decode_seconds += std::chrono::duration<double>((t2 - t1) - (t1 - t0)).count();
  }
  state.counters["decode_tokens_per_s"] =
      static_cast<double>(state.iterations() * 32 * prompts.size()) / decode_seconds;
  ReportRss(state);
}

// The decode step's last product: the greedy token of R final-normed states, through
// Transformer::GreedyTokens (a bfloat16 screen of lm_head settled in float32, where the CPU has
// bfloat16 products) against the full float32 logits' argmax. args: rows, screened (0/1).
void BM_GreedyTokens(benchmark::State& state) {
  const auto& t = *Model().transformer;
  const auto prompts = Prompts(static_cast<int>(state.range(0)));
  const at::Tensor last =
      schism::model::PromptForward(t, prompts, 2, /*capture_hidden_states=*/true)
          .hidden_states.back();
  const at::Tensor w = t.weights().lm_head;
  for (auto _ : state) {
    if (state.range(1) != 0) {
      benchmark::DoNotOptimize(t.GreedyTokens(last));
    } else {
      benchmark::DoNotOptimize(at::mm(w, last.t()).argmax(0));
    }
  }
  state.counters["screened"] = state.range(1) != 0 && t.screens_lm_head();
}

BENCHMARK(BM_GreedyTokens)
    ->ArgNames({"rows", "screened"})
    ->ArgsProduct({{1, 32}, {0, 1}})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Prefill)->Arg(1)->Arg(16)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Decode)
    ->Arg(1)
    ->Arg(16)
    ->Arg(32)
    ->Arg(64)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3);

}  // namespace

int main(int argc, char** argv) {
  return schism::bench::RunModelBenchmarks(argc, argv, &g_model_path);
}
