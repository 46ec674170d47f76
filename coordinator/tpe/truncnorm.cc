#include "coordinator/tpe/truncnorm.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace schism::tpe {
namespace {

constexpr double kLogC = 0.9189385332046727;  // ln sqrt(2π)
constexpr double kSqrt2 = 1.4142135623730951;
constexpr double kInvSqrt2 = 0.7071067811865476;
constexpr double kNan = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

double NdtrSingle(double a) {
  const double x = a / kSqrt2;
  if (x < -kInvSqrt2) return 0.5 * std::erfc(-x);
  if (x < kInvSqrt2) return 0.5 + 0.5 * std::erf(x);
  return 1.0 - 0.5 * std::erfc(x);
}

double NdtrVector(double a) { return 0.5 + 0.5 * std::erf(a / kSqrt2); }

double LogDiff(double p, double q) { return p + std::log1p(-std::exp(q - p)); }

double LogAddExp(double x, double y) {
  if (x == y) return x + std::log(2.0);
  return std::max(x, y) + std::log1p(std::exp(-std::fabs(x - y)));
}

}  // namespace

double LogNdtr(double a) {
  if (a > 6) return -NdtrSingle(-a);
  if (a > -20) return std::log(NdtrSingle(a));
  const double lhs = -0.5 * a * a - std::log(-a) - 0.5 * std::log(2 * M_PI);
  double last = 0, rhs = 1, numerator = 1, denominator = 1;
  const double denominator_factor = 1 / (a * a);
  double sign = 1;
  int i = 0;
  while (std::fabs(last - rhs) > std::numeric_limits<double>::epsilon()) {
    ++i;
    last = rhs;
    sign = -sign;
    denominator *= denominator_factor;
    numerator *= 2 * i - 1;
    rhs += sign * numerator * denominator;
  }
  return lhs + std::log(rhs);
}

double LogGaussMass(double a, double b) {
  if (b <= 0) return LogDiff(LogNdtr(b), LogNdtr(a));
  if (a > 0) return LogDiff(LogNdtr(-a), LogNdtr(-b));
  return std::log1p(-NdtrVector(a) - NdtrVector(-b));
}

std::vector<double> NdtriExp(const std::vector<double>& y) {
  const size_t n = y.size();
  std::vector<double> z(n), x(n);
  std::vector<bool> flipped(n);
  for (size_t i = 0; i < n; ++i) {
    flipped[i] = y[i] > -1e-2;
    z[i] = flipped[i] ? std::log(-std::expm1(y[i])) : y[i];
    x[i] = z[i] < -5 ? -std::sqrt(-2 * (z[i] + kLogC))
                     : -(std::sqrt(3.0) / M_PI) * std::log(std::expm1(-z[i]));
  }
  for (int iteration = 0; iteration < 100; ++iteration) {
    bool all_converged = true;
    for (size_t i = 0; i < n; ++i) {
      const double l = LogNdtr(x[i]);
      const double dx = (l - z[i]) * std::exp(l - (-x[i] * x[i] / 2 - kLogC));
      x[i] -= dx;
      if (!(std::fabs(dx) < 1e-8 * std::fabs(x[i]))) all_converged = false;
    }
    if (all_converged) break;
  }
  for (size_t i = 0; i < n; ++i) {
    if (flipped[i]) x[i] = -x[i];
  }
  return x;
}

std::vector<double> TruncnormPpf(const std::vector<double>& q, const std::vector<double>& a,
                                 const std::vector<double>& b) {
  const size_t n = q.size();
  std::vector<double> out(n);
  std::vector<size_t> left, right;
  std::vector<double> y_left, y_right;
  for (size_t i = 0; i < n; ++i) {
    const double log_mass = LogGaussMass(a[i], b[i]);
    if (a[i] < 0) {
      left.push_back(i);
      y_left.push_back(LogAddExp(LogNdtr(a[i]), std::log(q[i]) + log_mass));
    } else {
      right.push_back(i);
      y_right.push_back(LogAddExp(LogNdtr(-b[i]), std::log1p(-q[i]) + log_mass));
    }
  }
  const std::vector<double> x_left = NdtriExp(y_left);
  const std::vector<double> x_right = NdtriExp(y_right);
  for (size_t k = 0; k < left.size(); ++k) out[left[k]] = x_left[k];
  for (size_t k = 0; k < right.size(); ++k) out[right[k]] = -x_right[k];
  for (size_t i = 0; i < n; ++i) {
    if (q[i] == 0) out[i] = a[i];
    if (q[i] == 1) out[i] = b[i];
    if (a[i] == b[i]) out[i] = kNan;
  }
  return out;
}

double TruncnormLogPdf(double x, double a, double b, double loc, double scale) {
  const double z = (x - loc) / scale;
  if (a == b) return kNan;
  if (z < a || z > b) return -kInf;
  return -z * z / 2 - kLogC - LogGaussMass(a, b) - std::log(scale);
}

}  // namespace schism::tpe
