// Trial evaluation throughput on the real model: prompts scored per second (refusal prompts
// decoded up to 100 tokens + KL prompts), for quantization none/nf4, early stopping on/off,
// and k = 1 or 4 trials per batch.
//   build/benchmarks/trial_throughput_bench [--model PATH]
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

#include "benchmarks/bench_model.h"
#include "common/env.h"
#include "common/prompt_set.h"
#include "worker/runtime/directions.h"
#include "worker/runtime/trial_evaluator.h"

namespace {

using namespace schism;

std::string g_model_path;
constexpr int kPrompts = 8;

common::TrialParameters Trial(double position) {
  common::TrialParameters p;
  p.global_direction = true;
  p.direction_index = 17.5;
  p.components[common::kAttentionComponent] = {1.4, position, 0.5, 12.0};
  p.components[common::kMlpComponent] = {0.8, position, 0.5, 12.0};
  return p;
}

// The chat-encoded prompts of a prompt file.
std::vector<model::TokenIds> Encode(const model::LoadedModel& m, const char* file,
                                    const char* split) {
  return *model::EncodeChatPrompts(
      m, *common::LoadPromptLines(common::DefaultDataDir() + "/" + file, split),
      "You are a helpful assistant.", "");
}

// Refusal directions from the first `split` harmless and harmful training prompts.
at::Tensor Directions(const model::LoadedModel& m, const char* split) {
  const auto& t = *m.transformer;
  return model::RefusalDirections(
      model::ResidualMeans(t, Encode(m, "harmless_train.txt", split), 2, 32),
      model::ResidualMeans(t, Encode(m, "harmful_train.txt", split), 2, 32), true);
}

// The real model, or the benchmark skipped with the loader's error.
std::optional<model::LoadedModel> LoadOrSkip(benchmark::State& state,
                                             const model::LoadOptions& load = {}) {
  auto m = model::LoadModel(g_model_path, load);
  if (!m.ok()) {
    state.SkipWithError(std::string(m.status().message()).c_str());
    return std::nullopt;
  }
  return std::move(*m);
}

// args: nf4 (0/1), early stopping (0/1), k
void BM_EvaluateTrials(benchmark::State& state) {
  model::LoadOptions load;
  if (state.range(0)) load.quantization = model::Quantization::kNf4;
  auto m = LoadOrSkip(state, load);
  if (!m) return;
  auto encode = [&](const char* file, const char* split) { return Encode(*m, file, split); };
  const at::Tensor r = Directions(*m, "[:32]");
  model::EvaluatorOptions options;
  options.early_stopping = state.range(1) != 0;
  auto evaluator = model::TrialEvaluator::Create(*m, r, encode("harmful_test.txt", "[:8]"),
                                                 encode("harmless_test.txt", "[:8]"), options);
  std::vector<common::TrialParameters> trials;
  for (int i = 0; i < state.range(2); ++i) trials.push_back(Trial(16 + 2 * i));
  for (auto _ : state) benchmark::DoNotOptimize((*evaluator)->Evaluate(trials));
  state.counters["prompts_per_s"] =
      benchmark::Counter(static_cast<double>(2 * kPrompts * trials.size()),
                         benchmark::Counter::kIsIterationInvariantRate);
}

// The quick study's evaluator: directions from 64 + 64 prompts, 100 refusal prompts with
// 32-token responses, 32 KL prompts, 32 rows of each trial per batch.
std::unique_ptr<model::TrialEvaluator> StudyEvaluator(const model::LoadedModel& m,
                                                      model::EvaluatorOptions options) {
  options.max_response_length = 32;
  options.batch_size = 32;
  auto evaluator = model::TrialEvaluator::Create(m, Directions(m, "[:64]"),
                                                 Encode(m, "harmful_test.txt", "[:100]"),
                                                 Encode(m, "harmless_test.txt", "[:32]"), options);
  if (!evaluator.ok()) {
    std::fprintf(stderr, "%s\n", std::string(evaluator.status().message()).c_str());
    std::exit(1);
  }
  return std::move(*evaluator);
}

// Evaluates `trials` together once per iteration and reports seconds per trial.
void EvaluateEachIteration(benchmark::State& state, model::TrialEvaluator& evaluator,
                           const std::vector<common::TrialParameters>& trials) {
  for (auto _ : state) benchmark::DoNotOptimize(evaluator.Evaluate(trials));
  state.counters["s_per_trial"] =
      benchmark::Counter(static_cast<double>(state.iterations() * trials.size()),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// The quick study's trial (README's `schism run`; benchmarks/vs_heretic's study): 100 refusal
// prompts with 32-token responses and 32 KL prompts, 32 rows per batch, k = 2 trials per batch.
// args: continuous batching (0/1), shared prefix (0/1), frozen layers (0/1; the trials' weight
// windows start at layers 2 and 8 of 30). Reports seconds per trial.
void BM_StudyTrial(benchmark::State& state) {
  auto m = LoadOrSkip(state);
  if (!m) return;
  model::EvaluatorOptions options;
  options.continuous_batching = state.range(0) != 0;
  options.share_prefix = state.range(1) != 0;
  options.freeze_unmodified_layers = state.range(2) != 0;
  auto evaluator = StudyEvaluator(*m, options);
  EvaluateEachIteration(state, *evaluator, {Trial(14), Trial(20)});
  state.counters["frozen_MiB"] = static_cast<double>(evaluator->frozen_bytes()) / (1 << 20);
}

// A lease late in benchmarks/vs_heretic's study: trials 12 and 13 of its seed-0 run (TPE's
// low-KL trials; first adapted layers 15 and 12 of 30). Reports seconds per trial.
void BM_StudyLease(benchmark::State& state) {
  auto m = LoadOrSkip(state);
  if (!m) return;
  auto evaluator = StudyEvaluator(*m, {});
  std::vector<common::TrialParameters> trials(2);
  for (auto& t : trials) t.global_direction = false;  // direction_scope "per layer"
  trials[0].direction_index = 15.160065121989922;
  trials[0].components[common::kAttentionComponent] = {1.3098652526347103, 18.802840310609835,
                                                       0.025433698752358264, 3.6190651344218265};
  trials[0].components[common::kMlpComponent] = {0.8823133332201853, 17.962500578098805,
                                                 0.9791175978276023, 1.1767601263365435};
  trials[1].direction_index = 25.585689252683622;
  trials[1].components[common::kAttentionComponent] = {1.2759227987627713, 18.764413570963573,
                                                       0.09605275013945803, 7.037009807158308};
  trials[1].components[common::kMlpComponent] = {0.8203261550575063, 19.03964918306832,
                                                 0.5052316707121233, 1.5477847779257243};
  EvaluateEachIteration(state, *evaluator, trials);
}

BENCHMARK(BM_StudyLease)->Iterations(3)->Unit(benchmark::kSecond);

BENCHMARK(BM_StudyTrial)
    ->ArgNames({"continuous", "shared_prefix", "frozen"})
    ->ArgsProduct({{0, 1}, {0, 1}, {0, 1}})
    ->Iterations(1)
    ->Unit(benchmark::kSecond);

BENCHMARK(BM_EvaluateTrials)
    ->ArgNames({"nf4", "early_stop", "k"})
    ->ArgsProduct({{0, 1}, {1, 0}, {1, 4}})
    ->Iterations(1)
    ->Unit(benchmark::kSecond);

}  // namespace

int main(int argc, char** argv) {
  return schism::bench::RunModelBenchmarks(argc, argv, &g_model_path);
}
