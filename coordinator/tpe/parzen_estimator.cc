#include "coordinator/tpe/parzen_estimator.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "coordinator/tpe/truncnorm.h"

namespace schism::tpe {
namespace {
constexpr double kLogSqrt2Pi = 0.9189385332046727;
}  // namespace

ParzenEstimator::ParzenEstimator(const SearchSpace& space,
                                 const std::vector<std::vector<double>>& observations,
                                 const std::vector<double>& weights, double prior_weight) {
  const size_t n = observations.size();
  const size_t n_kernels = n + 1;
  if (n > 0) {
    weights_ = weights;
    weights_.push_back(prior_weight);
  } else {
    weights_ = {1.0};
  }
  double total = 0;
  for (double w : weights_) total += w;
  for (double& w : weights_) w /= total;

  const double dims = static_cast<double>(space.size());
  for (size_t d = 0; d < space.size(); ++d) {
    Param p;
    p.dist = space[d].second;
    if (p.dist.kind == DistributionKind::kCategorical) {
      const size_t c = p.dist.choices.size();
      if (n == 0) {
        p.rows.assign(1, std::vector<double>(c, 1.0 / static_cast<double>(c)));
      } else {
        const double base = prior_weight / static_cast<double>(n_kernels);
        p.rows.assign(n_kernels, std::vector<double>(c, base));
        for (size_t i = 0; i < n; ++i) p.rows[i][static_cast<size_t>(observations[i][d])] += 1.0;
        for (auto& row : p.rows) {
          double sum = 0;
          for (double v : row) sum += v;
          for (double& v : row) v /= sum;
        }
      }
    } else {
      p.lo_t = p.dist.TransformedLow();
      p.hi_t = p.dist.TransformedHigh();
      const double range = p.hi_t - p.lo_t;
      double sigma =
          0.2 * std::pow(static_cast<double>(std::max<size_t>(n, 1)), -1.0 / (dims + 4)) * range;
      const double min_sigma = range / std::min(100.0, static_cast<double>(n) + 2.0);
      sigma = std::clamp(sigma, min_sigma, range);
      for (size_t i = 0; i < n; ++i) {
        p.mus.push_back(Transform(p, observations[i][d]));
        p.sigmas.push_back(sigma);
      }
      p.mus.push_back(0.5 * (p.lo_t + p.hi_t));  // prior kernel
      p.sigmas.push_back(range);
    }
    params_.push_back(std::move(p));
  }
}

double ParzenEstimator::Transform(const Param& p, double x) const {
  return p.dist.log ? std::log(x) : x;
}

std::vector<std::vector<double>> ParzenEstimator::Sample(coordinator::RandomState& rng,
                                                         int n) const {
  const size_t k = weights_.size();
  std::vector<double> cdf(k);
  double acc = 0;
  for (size_t i = 0; i < k; ++i) cdf[i] = acc += weights_[i];
  for (double& c : cdf) c /= cdf[k - 1];
  std::vector<size_t> active(n);
  for (int j = 0; j < n; ++j) {
    const double u = rng.NextDouble();
    active[j] = std::upper_bound(cdf.begin(), cdf.end(), u) - cdf.begin();
    active[j] = std::min(active[j], k - 1);
  }
  std::vector<std::vector<double>> out(n, std::vector<double>(params_.size()));
  // Categoricals first, in space order, one draw per candidate each.
  for (size_t d = 0; d < params_.size(); ++d) {
    const Param& p = params_[d];
    if (p.dist.kind != DistributionKind::kCategorical) continue;
    for (int j = 0; j < n; ++j) {
      const double u = rng.NextDouble();
      const std::vector<double>& row = p.rows[std::min(active[j], p.rows.size() - 1)];
      double cp = 0;
      size_t index = 0;
      for (size_t c = 0; c < row.size(); ++c) {
        cp = c + 1 == row.size() ? 1.0 : cp + row[c];
        if (cp < u) index = c + 1;
      }
      out[j][d] = static_cast<double>(std::min(index, row.size() - 1));
    }
  }
  // Then every numerical parameter together: one (params × candidates) batch through ppf.
  std::vector<size_t> numeric;
  for (size_t d = 0; d < params_.size(); ++d) {
    if (params_[d].dist.kind != DistributionKind::kCategorical) numeric.push_back(d);
  }
  std::vector<double> q, a, b;
  for (size_t d : numeric) {
    const Param& p = params_[d];
    for (int j = 0; j < n; ++j) {
      const size_t kernel = std::min(active[j], p.mus.size() - 1);
      q.push_back(rng.NextDouble());
      a.push_back((p.lo_t - p.mus[kernel]) / p.sigmas[kernel]);
      b.push_back((p.hi_t - p.mus[kernel]) / p.sigmas[kernel]);
    }
  }
  const std::vector<double> z = TruncnormPpf(q, a, b);
  size_t idx = 0;
  for (size_t d : numeric) {
    const Param& p = params_[d];
    for (int j = 0; j < n; ++j, ++idx) {
      const size_t kernel = std::min(active[j], p.mus.size() - 1);
      double y = z[idx] * p.sigmas[kernel] + p.mus[kernel];
      if (p.dist.log) y = std::exp(y);
      if (p.dist.step) {
        const double s = *p.dist.step;
        y = std::clamp(p.dist.low + std::nearbyint((y - p.dist.low) / s) * s, p.dist.low,
                       p.dist.high);
      }
      out[j][d] = y;
    }
  }
  return out;
}

std::vector<double> ParzenEstimator::LogPdf(
    const std::vector<std::vector<double>>& candidates) const {
  const size_t k = weights_.size();
  std::vector<double> log_weights(k);
  for (size_t i = 0; i < k; ++i) log_weights[i] = std::log(weights_[i]);
  // Everything that depends on the kernel alone is computed once, not once per candidate: with
  // thousands of observations this is what keeps an ask in milliseconds.
  struct KernelTerms {
    std::vector<double> a, b, log_mass, log_sigma;
  };
  std::vector<KernelTerms> terms(params_.size());
  for (size_t d = 0; d < params_.size(); ++d) {
    const Param& p = params_[d];
    if (p.dist.kind == DistributionKind::kCategorical) continue;
    KernelTerms& t = terms[d];
    for (size_t kernel = 0; kernel < k; ++kernel) {
      const double mu = p.mus[kernel], sigma = p.sigmas[kernel];
      t.a.push_back((p.lo_t - mu) / sigma);
      t.b.push_back((p.hi_t - mu) / sigma);
      t.log_mass.push_back(LogGaussMass(t.a.back(), t.b.back()));
      t.log_sigma.push_back(std::log(sigma));
    }
  }
  std::vector<double> out(candidates.size());
  std::vector<double> lp(k);
  for (size_t j = 0; j < candidates.size(); ++j) {
    std::fill(lp.begin(), lp.end(), 0.0);
    for (size_t d = 0; d < params_.size(); ++d) {
      const Param& p = params_[d];
      const double x = candidates[j][d];
      if (p.dist.kind == DistributionKind::kCategorical) {
        for (size_t kernel = 0; kernel < k; ++kernel) {
          lp[kernel] +=
              std::log(p.rows[std::min(kernel, p.rows.size() - 1)][static_cast<size_t>(x)]);
        }
        continue;
      }
      const KernelTerms& t = terms[d];
      if (p.dist.step) {  // discretised kernel: the mass of the cell around x
        const double half = *p.dist.step / 2;
        const double lower_t = Transform(p, x - half), upper_t = Transform(p, x + half);
        for (size_t kernel = 0; kernel < k; ++kernel) {
          const double mu = p.mus[kernel], sigma = p.sigmas[kernel];
          lp[kernel] +=
              LogGaussMass((lower_t - mu) / sigma, (upper_t - mu) / sigma) - t.log_mass[kernel];
        }
        continue;
      }
      const double xt = Transform(p, x);
      for (size_t kernel = 0; kernel < k; ++kernel) {
        // TruncnormLogPdf with the kernel-only terms hoisted out.
        const double z = (xt - p.mus[kernel]) / p.sigmas[kernel];
        lp[kernel] += (z < t.a[kernel] || z > t.b[kernel])
                          ? -std::numeric_limits<double>::infinity()
                          : -z * z / 2 - kLogSqrt2Pi - t.log_mass[kernel] - t.log_sigma[kernel];
      }
    }
    double max_lp = -std::numeric_limits<double>::infinity();
    for (size_t kernel = 0; kernel < k; ++kernel) {
      lp[kernel] += log_weights[kernel];
      max_lp = std::max(max_lp, lp[kernel]);
    }
    if (std::isinf(max_lp) && max_lp < 0) max_lp = 0;
    double sum = 0;
    for (size_t kernel = 0; kernel < k; ++kernel) sum += std::exp(lp[kernel] - max_lp);
    out[j] = std::log(sum) + max_lp;
  }
  return out;
}

}  // namespace schism::tpe
