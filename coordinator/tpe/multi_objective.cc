#include "coordinator/tpe/multi_objective.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>

namespace schism::tpe {
namespace {

constexpr double kEps = 1e-12;

bool Dominates(const LossVector& p, const LossVector& q) {
  bool strictly = false;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] > q[i]) return false;
    if (p[i] < q[i]) strictly = true;
  }
  return strictly;
}

// Distinct vectors in lexicographic order, and for each input its index among them.
std::vector<LossVector> UniqueSorted(const std::vector<LossVector>& losses,
                                     std::vector<size_t>* inverse) {
  std::vector<LossVector> unique = losses;
  std::sort(unique.begin(), unique.end());
  unique.erase(std::unique(unique.begin(), unique.end()), unique.end());
  if (inverse != nullptr) {
    inverse->resize(losses.size());
    for (size_t i = 0; i < losses.size(); ++i) {
      (*inverse)[i] = std::lower_bound(unique.begin(), unique.end(), losses[i]) - unique.begin();
    }
  }
  return unique;
}

// Front of a lexsorted list of distinct vectors (positions into `points`).
std::vector<size_t> FrontOfSorted(const std::vector<LossVector>& points,
                                  const std::vector<size_t>& alive) {
  std::vector<size_t> front;
  if (!points.empty() && points[0].size() == 2) {
    double running_min = std::numeric_limits<double>::infinity();
    for (size_t k = 0; k < alive.size(); ++k) {
      const double y = points[alive[k]][1];
      if (k == 0 || y < running_min) front.push_back(alive[k]);
      running_min = std::min(running_min, y);
    }
    return front;
  }
  for (size_t i : alive) {
    bool dominated = false;
    for (size_t j : alive) {
      if (j != i && Dominates(points[j], points[i])) {
        dominated = true;
        break;
      }
    }
    if (!dominated) front.push_back(i);
  }
  return front;
}

double Hypervolume2d(std::vector<LossVector> points, const LossVector& ref) {
  std::sort(points.begin(), points.end());
  double hv = 0, prev_y = ref[1];
  for (const LossVector& p : points) {
    if (p[1] >= prev_y || p[0] >= ref[0]) continue;  // dominated by an earlier point
    hv += (ref[0] - p[0]) * (prev_y - p[1]);
    prev_y = p[1];
  }
  return hv;
}

// Exact hypervolume in any dimension by slicing along the last objective.
double HypervolumeSliced(std::vector<LossVector> points, const LossVector& ref) {
  const size_t d = ref.size();
  if (points.empty()) return 0;
  if (d == 1) {
    double best = ref[0];
    for (const auto& p : points) best = std::min(best, p[0]);
    return std::max(0.0, ref[0] - best);
  }
  if (d == 2) return Hypervolume2d(std::move(points), ref);
  std::sort(points.begin(), points.end(),
            [d](const LossVector& a, const LossVector& b) { return a[d - 1] < b[d - 1]; });
  double hv = 0;
  std::vector<LossVector> slice;
  LossVector sub_ref(ref.begin(), ref.end() - 1);
  for (size_t i = 0; i < points.size(); ++i) {
    slice.emplace_back(points[i].begin(), points[i].end() - 1);
    const double upper = i + 1 < points.size() ? points[i + 1][d - 1] : ref[d - 1];
    const double depth = std::min(upper, ref[d - 1]) - points[i][d - 1];
    if (depth > 0) hv += depth * HypervolumeSliced(slice, sub_ref);
  }
  return hv;
}

}  // namespace

std::vector<int> NonDominationRanks(const std::vector<LossVector>& losses, size_t min_ranked) {
  std::vector<size_t> inverse;
  const std::vector<LossVector> unique = UniqueSorted(losses, &inverse);
  std::vector<int> unique_rank(unique.size(), -1);
  std::vector<size_t> alive(unique.size());
  std::iota(alive.begin(), alive.end(), 0);
  int rank = 0;
  size_t ranked = 0;
  while (!alive.empty() && ranked < min_ranked) {
    const std::vector<size_t> front = FrontOfSorted(unique, alive);
    for (size_t i : front) unique_rank[i] = rank;
    ranked += front.size();
    std::vector<size_t> rest;
    for (size_t i : alive) {
      if (unique_rank[i] < 0) rest.push_back(i);
    }
    alive = std::move(rest);
    ++rank;
  }
  for (size_t i : alive) unique_rank[i] = rank;
  std::vector<int> ranks(losses.size());
  for (size_t i = 0; i < losses.size(); ++i) ranks[i] = unique_rank[inverse[i]];
  return ranks;
}

LossVector ReferencePoint(const std::vector<LossVector>& losses) {
  LossVector ref = losses.front();
  for (const LossVector& l : losses) {
    for (size_t i = 0; i < ref.size(); ++i) ref[i] = std::max(ref[i], l[i]);
  }
  for (double& r : ref) {
    r = std::max(1.1 * r, 0.9 * r);
    if (r == 0) r = kEps;
  }
  return ref;
}

double Hypervolume(std::vector<LossVector> points, const LossVector& ref) {
  for (const auto& p : points) {
    for (double v : p) {
      if (std::isinf(v)) return std::numeric_limits<double>::infinity();
    }
  }
  for (double r : ref) {
    if (std::isinf(r)) return std::numeric_limits<double>::infinity();
  }
  return HypervolumeSliced(std::move(points), ref);
}

std::vector<size_t> SolveHssp(const std::vector<LossVector>& losses, const std::vector<size_t>& ids,
                              size_t m, const LossVector& ref) {
  if (m >= losses.size()) return ids;
  // Distinct rows in lexsorted order, each with the first input position holding it.
  std::vector<size_t> inverse;
  const std::vector<LossVector> unique = UniqueSorted(losses, &inverse);
  std::vector<size_t> first(unique.size(), SIZE_MAX);
  for (size_t i = 0; i < losses.size(); ++i) {
    if (first[inverse[i]] == SIZE_MAX) first[inverse[i]] = i;
  }
  if (unique.size() < m) {
    std::vector<size_t> chosen_pos = first;
    std::vector<bool> used(losses.size(), false);
    for (size_t p : first) used[p] = true;
    for (size_t i = 0; i < losses.size() && chosen_pos.size() < m; ++i) {
      if (!used[i]) chosen_pos.push_back(i);
    }
    std::vector<size_t> out;
    for (size_t p : chosen_pos) out.push_back(ids[p]);
    return out;
  }
  bool finite = true;
  for (double r : ref) finite &= std::isfinite(r);
  std::vector<size_t> out;
  if (!finite || unique.size() == m) {
    for (size_t k = 0; k < m; ++k) out.push_back(ids[first[k]]);
    return out;
  }
  if (ref.size() == 2) {
    // Exact incremental contributions: each candidate's box corner shrinks as neighbours go in.
    std::vector<size_t> candidates(unique.size());
    std::iota(candidates.begin(), candidates.end(), 0);
    std::vector<LossVector> corner(unique.size(), ref);
    while (out.size() < m) {
      size_t best = 0;
      double best_contribution = -std::numeric_limits<double>::infinity();
      for (size_t k = 0; k < candidates.size(); ++k) {
        const size_t j = candidates[k];
        const double c = (corner[j][0] - unique[j][0]) * (corner[j][1] - unique[j][1]);
        if (c > best_contribution) {
          best_contribution = c;
          best = k;
        }
      }
      const size_t chosen = candidates[best];
      out.push_back(ids[first[chosen]]);
      candidates.erase(candidates.begin() + best);
      for (size_t k = 0; k < candidates.size(); ++k) {
        const size_t j = candidates[k];
        if (k < best) {
          corner[j][0] = std::min(corner[j][0], unique[chosen][0]);
        } else {
          corner[j][1] = std::min(corner[j][1], unique[chosen][1]);
        }
      }
    }
    return out;
  }
  // Three or more objectives: plain greedy on exact hypervolume gains.
  std::vector<LossVector> selected;
  std::vector<bool> taken(unique.size(), false);
  double hv_selected = 0;
  while (out.size() < m) {
    size_t best = SIZE_MAX;
    double best_gain = -std::numeric_limits<double>::infinity();
    for (size_t j = 0; j < unique.size(); ++j) {
      if (taken[j]) continue;
      std::vector<LossVector> with = selected;
      with.push_back(unique[j]);
      const double gain = Hypervolume(with, ref) - hv_selected;
      if (gain > best_gain) {
        best_gain = gain;
        best = j;
      }
    }
    taken[best] = true;
    selected.push_back(unique[best]);
    hv_selected = Hypervolume(selected, ref);
    out.push_back(ids[first[best]]);
  }
  return out;
}

std::vector<size_t> SplitBelowMultiObjective(const std::vector<LossVector>& losses,
                                             size_t n_below) {
  std::vector<size_t> below;
  if (n_below == 0) return below;
  if (n_below >= losses.size()) {
    below.resize(losses.size());
    std::iota(below.begin(), below.end(), 0);
    return below;
  }
  const std::vector<int> ranks = NonDominationRanks(losses, n_below);
  const int max_rank = *std::max_element(ranks.begin(), ranks.end());
  int last = -1;
  size_t count = 0;
  for (int r = 0; r <= max_rank; ++r) {
    const size_t with_r = count + std::count(ranks.begin(), ranks.end(), r);
    if (with_r > n_below) break;
    count = with_r;
    last = r;
  }
  for (size_t i = 0; i < losses.size(); ++i) {
    if (ranks[i] <= last) below.push_back(i);
  }
  if (below.size() < n_below) {
    std::vector<LossVector> tied;
    std::vector<size_t> tied_pos;
    for (size_t i = 0; i < losses.size(); ++i) {
      if (ranks[i] == last + 1) {
        tied.push_back(losses[i]);
        tied_pos.push_back(i);
      }
    }
    for (size_t p : SolveHssp(tied, tied_pos, n_below - below.size(), ReferencePoint(tied))) {
      below.push_back(p);
    }
    std::sort(below.begin(), below.end());
  }
  return below;
}

std::vector<double> MotpeWeights(const std::vector<LossVector>& losses) {
  const size_t n = losses.size();
  std::vector<double> weights(n, 1.0);
  if (n <= 1) return weights;
  const LossVector ref = ReferencePoint(losses);
  // On the front: not dominated by any other vector (duplicates of a front point included).
  std::vector<size_t> front;
  for (size_t i = 0; i < n; ++i) {
    bool dominated = false;
    for (size_t j = 0; j < n && !dominated; ++j) dominated = Dominates(losses[j], losses[i]);
    if (!dominated) front.push_back(i);
  }
  std::vector<LossVector> front_points;
  for (size_t i : front) front_points.push_back(losses[i]);
  const double hv = Hypervolume(front_points, ref);
  if (std::isinf(hv)) return weights;
  std::vector<double> contribution(n, 0.0);
  for (size_t k = 0; k < front.size(); ++k) {
    std::vector<LossVector> without = front_points;
    without.erase(without.begin() + k);
    contribution[front[k]] = hv - Hypervolume(without, ref);
  }
  const double max_contribution =
      std::max(*std::max_element(contribution.begin(), contribution.end()), kEps);
  for (size_t i = 0; i < n; ++i) weights[i] = std::max(contribution[i] / max_contribution, kEps);
  return weights;
}

}  // namespace schism::tpe
