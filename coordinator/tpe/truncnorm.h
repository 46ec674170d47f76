// The truncated-normal numerics of Optuna's TPE (_truncnorm.py, _erf.py), reproduced so that
// candidates and densities match Optuna to the last few ulps (docs/algorithm.md#truncated-normal).
#ifndef SCHISM_COORDINATOR_TPE_TRUNCNORM_H_
#define SCHISM_COORDINATOR_TPE_TRUNCNORM_H_

#include <vector>

namespace schism::tpe {

// ln Φ(a), accurate far into both tails.
double LogNdtr(double a);
// ln(Φ(b) − Φ(a)) for a ≤ b.
double LogGaussMass(double a, double b);
// Solves LogNdtr(x) = y for a batch; Newton steps run until every element has converged, as
// Optuna's vectorised loop does.
std::vector<double> NdtriExp(const std::vector<double>& y);
// Inverse CDF of the standard normal truncated to [a, b], elementwise over one batch.
std::vector<double> TruncnormPpf(const std::vector<double>& q, const std::vector<double>& a,
                                 const std::vector<double>& b);
// Log density of the normal(loc, scale) truncated to [loc + a·scale, loc + b·scale] at x.
double TruncnormLogPdf(double x, double a, double b, double loc, double scale);

}  // namespace schism::tpe

#endif  // SCHISM_COORDINATOR_TPE_TRUNCNORM_H_
