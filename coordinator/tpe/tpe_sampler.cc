#include "coordinator/tpe/tpe_sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "coordinator/tpe/multi_objective.h"

namespace schism::tpe {
namespace {

bool Finished(const TrialRecord& t) {
  return t.state == TrialState::kComplete || t.state == TrialState::kPruned;
}

// The parameters every finished trial shares with the same distribution, sorted by name,
// without single-valued ones (Optuna's IntersectionSearchSpace).
SearchSpace IntersectionSearchSpace(const std::vector<TrialRecord>& trials) {
  std::optional<std::map<std::string, Distribution>> common;
  for (const TrialRecord& t : trials) {
    if (!Finished(t)) continue;
    if (!common) {
      common = t.distributions;
      continue;
    }
    for (auto it = common->begin(); it != common->end();) {
      auto other = t.distributions.find(it->first);
      it = (other == t.distributions.end() || !(other->second == it->second)) ? common->erase(it)
                                                                              : std::next(it);
    }
  }
  SearchSpace space;
  if (!common) return space;
  for (const auto& [name, d] : *common) {
    if (!d.Single()) space.emplace_back(name, d);
  }
  return space;
}

}  // namespace

TpeSampler::TpeSampler(TpeOptions options)
    : options_(std::move(options)), rng_tpe_(options_.seed), rng_random_(options_.seed) {}

int TpeSampler::Gamma(int n) { return std::min(static_cast<int>(std::ceil(0.1 * n)), 25); }

std::vector<double> TpeSampler::DefaultWeights(int n) {
  if (n <= 0) return {};
  if (n < 25) return std::vector<double>(n, 1.0);
  const int ramp = n - 25;
  std::vector<double> w;
  const double start = 1.0 / n;
  if (ramp == 1) {
    w.push_back(start);
  } else if (ramp > 1) {
    const double step = (1.0 - start) / (ramp - 1);
    for (int i = 0; i < ramp; ++i) w.push_back(start + i * step);
    w.back() = 1.0;
  }
  w.insert(w.end(), 25, 1.0);
  return w;
}

double TpeSampler::SampleRandom(const Distribution& d) {
  const double lo = d.TransformedLow(), hi = d.TransformedHigh();
  if (d.kind == DistributionKind::kCategorical) {
    size_t best = 0;
    double best_u = -1;
    for (size_t c = 0; c < d.choices.size(); ++c) {
      const double u = rng_random_.Uniform(0.0, 1.0);
      if (u > best_u) {
        best_u = u;
        best = c;
      }
    }
    return static_cast<double>(best);
  }
  double v = rng_random_.Uniform(lo, hi);
  if (d.log) v = std::exp(v);
  if (d.step) {
    const double s = *d.step;
    return std::clamp(d.low + std::nearbyint((v - d.low) / s) * s, d.low, d.high);
  }
  return std::min(v, std::nextafter(d.high, -std::numeric_limits<double>::infinity()));
}

std::map<std::string, double> TpeSampler::SampleRelative(const std::vector<TrialRecord>& all,
                                                         int64_t number, const SearchSpace& space) {
  // §5.1 collect trials in number order.
  std::vector<const TrialRecord*> trials;
  for (const TrialRecord& t : all) {
    if (Finished(t) ||
        (options_.constant_liar && t.state == TrialState::kRunning && t.number != number)) {
      trials.push_back(&t);
    }
  }
  std::sort(trials.begin(), trials.end(),
            [](const TrialRecord* a, const TrialRecord* b) { return a->number < b->number; });
  int n = 0;
  for (const TrialRecord* t : trials) n += t->state != TrialState::kRunning;
  const int n_below = Gamma(n);

  // §5.3 split.
  std::vector<const TrialRecord*> complete, pruned, below, above;
  for (const TrialRecord* t : trials) {
    if (t->state == TrialState::kRunning) {
      above.push_back(t);
    } else if (t->state == TrialState::kComplete) {
      complete.push_back(t);
    } else {
      pruned.push_back(t);
    }
  }
  auto loss = [&](const TrialRecord* t) {
    LossVector l = t->values;
    for (size_t i = 0; i < l.size() && i < options_.directions.size(); ++i) {
      if (options_.directions[i] == Direction::kMaximize) l[i] = -l[i];
    }
    return l;
  };
  const size_t k = std::min<size_t>(n_below, complete.size());
  std::vector<bool> is_below(complete.size(), false);
  if (options_.directions.size() > 1) {
    std::vector<LossVector> losses;
    for (const TrialRecord* t : complete) losses.push_back(loss(t));
    for (size_t pos : SplitBelowMultiObjective(losses, k)) is_below[pos] = true;
  } else {
    std::vector<size_t> order(complete.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return loss(complete[a])[0] < loss(complete[b])[0];
    });
    for (size_t i = 0; i < k; ++i) is_below[order[i]] = true;
  }
  for (size_t i = 0; i < complete.size(); ++i) (is_below[i] ? below : above).push_back(complete[i]);
  // Pruned trials without intermediate values keep trial order.
  const size_t pruned_below = std::max<int>(0, n_below - static_cast<int>(k));
  for (size_t i = 0; i < pruned.size(); ++i)
    (i < pruned_below ? below : above).push_back(pruned[i]);
  auto by_number = [](const TrialRecord* a, const TrialRecord* b) { return a->number < b->number; };
  std::sort(below.begin(), below.end(), by_number);
  std::sort(above.begin(), above.end(), by_number);

  // §5.4 weights.
  std::vector<double> below_weights(below.size(), 1.0);
  if (options_.directions.size() > 1 && below.size() > 1) {
    std::vector<LossVector> losses;
    std::vector<size_t> with_values;
    for (size_t i = 0; i < below.size(); ++i) {
      if (below[i]->state == TrialState::kComplete) {
        losses.push_back(loss(below[i]));
        with_values.push_back(i);
      } else {
        below_weights[i] = 1e-12;  // a pruned trial has no objective values to weigh
      }
    }
    const std::vector<double> w = MotpeWeights(losses);
    for (size_t j = 0; j < with_values.size(); ++j) below_weights[with_values[j]] = w[j];
  }
  std::vector<double> above_weights = DefaultWeights(static_cast<int>(above.size()));

  auto observations = [&](const std::vector<const TrialRecord*>& group,
                          const std::vector<double>& w, std::vector<std::vector<double>>* obs,
                          std::vector<double>* obs_w) {
    for (size_t i = 0; i < group.size(); ++i) {
      std::vector<double> row;
      for (const auto& [name, d] : space) {
        auto it = group[i]->params.find(name);
        if (it == group[i]->params.end()) break;
        row.push_back(it->second);
      }
      if (row.size() != space.size()) continue;
      obs->push_back(std::move(row));
      obs_w->push_back(w[i]);
    }
  };
  std::vector<std::vector<double>> below_obs, above_obs;
  std::vector<double> below_w, above_w;
  observations(below, below_weights, &below_obs, &below_w);
  observations(above, above_weights, &above_obs, &above_w);

  // §5.5–§5.8 estimators, candidates, acquisition.
  const ParzenEstimator l(space, below_obs, below_w, options_.prior_weight);
  const ParzenEstimator g(space, above_obs, above_w, options_.prior_weight);
  const auto candidates = l.Sample(rng_tpe_, options_.n_ei_candidates);
  const std::vector<double> log_l = l.LogPdf(candidates);
  const std::vector<double> log_g = g.LogPdf(candidates);
  size_t best = 0;
  double best_acq = -std::numeric_limits<double>::infinity();
  for (size_t j = 0; j < candidates.size(); ++j) {
    const double acq = log_l[j] - log_g[j];
    if (std::isnan(acq)) {  // numpy's argmax returns the first NaN
      best = j;
      break;
    }
    if (acq > best_acq) {
      best_acq = acq;
      best = j;
    }
  }
  std::map<std::string, double> result;
  for (size_t d = 0; d < space.size(); ++d) result[space[d].first] = candidates[best][d];
  return result;
}

std::map<std::string, double> TpeSampler::SampleTrial(const std::vector<TrialRecord>& trials,
                                                      int64_t number, const SearchSpace& order) {
  int finished = 0;
  for (const TrialRecord& t : trials) finished += Finished(t);
  const bool startup = finished < options_.n_startup_trials;
  std::map<std::string, double> relative;
  bool relative_done = false;
  std::map<std::string, double> out;
  for (const auto& [name, d] : order) {
    if (d.Single()) {
      out[name] = d.kind == DistributionKind::kCategorical ? 0.0 : d.low;
      continue;
    }
    if (!relative_done && !startup) {  // lazily, at the first non-single suggest (spec §1)
      relative_done = true;
      const SearchSpace space = IntersectionSearchSpace(trials);
      if (!space.empty()) relative = SampleRelative(trials, number, space);
    }
    auto it = relative.find(name);
    if (it != relative.end() && d.Contains(it->second)) {
      out[name] = it->second;
    } else if (startup) {
      out[name] = SampleRandom(d);
    } else {
      out[name] = SampleRelative(trials, number, {{name, d}}).at(name);
    }
  }
  return out;
}

}  // namespace schism::tpe
