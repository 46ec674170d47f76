// Latency of one TPE ask (all 10 Heretic parameters, 128 EI candidates, constant liar with 4
// running trials) as the number of finished trials grows: 100, 1,000, 5,000, 10,000.
#include <benchmark/benchmark.h>

#include <cmath>

#include "coordinator/random_state.h"
#include "coordinator/tpe/tpe_sampler.h"

namespace {

using schism::tpe::Distribution;
using schism::tpe::SearchSpace;
using schism::tpe::TrialRecord;
using schism::tpe::TrialState;

SearchSpace HereticSpace(double L) {
  SearchSpace s;
  s.emplace_back("direction_scope", *Distribution::Categorical({"global", "per layer"}));
  s.emplace_back("direction_index", *Distribution::Float(0.4 * L, 0.9 * L));
  for (std::string c : {"attn.o_proj", "mlp.down_proj"}) {
    s.emplace_back(c + ".max_weight",
                   *Distribution::Float(c == "mlp.down_proj" ? -0.25 : 0.8, 1.5));
    s.emplace_back(c + ".max_weight_position", *Distribution::Float(0.6 * L, L));
    s.emplace_back(c + ".min_weight", *Distribution::Float(0.0, 1.0));
    s.emplace_back(c + ".min_weight_distance", *Distribution::Float(1.0, 0.6 * L));
  }
  return s;
}

// A study with `finished` complete trials of random parameters and a smooth 2-objective score,
// plus 4 running trials.
std::vector<TrialRecord> MakeStudy(const SearchSpace& space, int finished) {
  schism::coordinator::RandomState rng(123);
  std::vector<TrialRecord> trials;
  for (int i = 0; i < finished + 4; ++i) {
    TrialRecord t;
    t.number = i;
    t.state = i < finished ? TrialState::kComplete : TrialState::kRunning;
    for (const auto& [name, d] : space) {
      t.distributions.emplace(name, d);
      t.params[name] = d.kind == schism::tpe::DistributionKind::kCategorical
                           ? std::floor(rng.NextDouble() * 2)
                           : d.low + (d.high - d.low) * rng.NextDouble();
    }
    const double a = t.params["attn.o_proj.max_weight"];
    const double m = std::max(0.0, t.params["mlp.down_proj.max_weight"]);
    t.values = {std::round(100 * ((a - 1.3) * (a - 1.3) + 0.5 * (m - 0.4) * (m - 0.4))),
                0.3 * a * a + 0.5 * m};
    trials.push_back(std::move(t));
  }
  return trials;
}

void BM_TpeAsk(benchmark::State& state) {
  const SearchSpace space = HereticSpace(29);
  const auto trials = MakeStudy(space, static_cast<int>(state.range(0)));
  schism::tpe::TpeOptions options;
  options.n_startup_trials = 60;
  options.n_ei_candidates = 128;
  options.constant_liar = true;
  options.seed = 1;
  options.directions = {schism::tpe::Direction::kMinimize, schism::tpe::Direction::kMinimize};
  schism::tpe::TpeSampler sampler(options);
  const int64_t next = static_cast<int64_t>(trials.size());
  for (auto _ : state) benchmark::DoNotOptimize(sampler.SampleTrial(trials, next, space));
}
BENCHMARK(BM_TpeAsk)->Arg(100)->Arg(1000)->Arg(5000)->Arg(10000)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
