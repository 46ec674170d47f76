#include "coordinator/tpe/distributions.h"

#include <cmath>
#include <cstdio>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace schism::tpe {

absl::StatusOr<Distribution> Distribution::Float(double low, double high, bool log,
                                                 std::optional<double> step) {
  if (!(low <= high)) {
    return absl::InvalidArgumentError(
        absl::StrCat("float distribution: low ", low, " > high ", high));
  }
  if (log && step)
    return absl::InvalidArgumentError("float distribution: log and step cannot combine");
  if (log && low <= 0) return absl::InvalidArgumentError("float distribution: log needs low > 0");
  if (step && *step <= 0) return absl::InvalidArgumentError("float distribution: step must be > 0");
  Distribution d;
  d.kind = DistributionKind::kFloat;
  d.low = low;
  d.high = high;
  d.log = log;
  d.step = step;
  if (step) {
    // Optuna moves a high that is off the step grid down onto it (in Decimal arithmetic); a
    // high already on the grid, up to double rounding, stays as given.
    const double r = (high - low) / *step;
    if (std::fabs(r - std::nearbyint(r)) > 1e-9) d.high = std::floor(r) * *step + low;
  }
  return d;
}

absl::StatusOr<Distribution> Distribution::Int(int64_t low, int64_t high, bool log, int64_t step) {
  if (low > high)
    return absl::InvalidArgumentError(
        absl::StrCat("int distribution: low ", low, " > high ", high));
  if (step <= 0) return absl::InvalidArgumentError("int distribution: step must be > 0");
  if (log && step != 1) return absl::InvalidArgumentError("int distribution: log needs step 1");
  if (log && low < 1) return absl::InvalidArgumentError("int distribution: log needs low >= 1");
  Distribution d;
  d.kind = DistributionKind::kInt;
  d.low = static_cast<double>(low);
  d.high = static_cast<double>((high - low) / step * step + low);
  d.log = log;
  d.step = static_cast<double>(step);
  return d;
}

absl::StatusOr<Distribution> Distribution::Categorical(std::vector<std::string> choices) {
  if (choices.empty()) return absl::InvalidArgumentError("categorical distribution: no choices");
  Distribution d;
  d.kind = DistributionKind::kCategorical;
  d.choices = std::move(choices);
  d.low = 0;
  d.high = static_cast<double>(d.choices.size() - 1);
  return d;
}

bool Distribution::Single() const {
  switch (kind) {
    case DistributionKind::kCategorical:
      return choices.size() == 1;
    case DistributionKind::kFloat:
      return step ? (high - low) < *step : low == high;
    case DistributionKind::kInt:
      return log ? low == high : (low == high || (high - low) < *step);
  }
  return false;
}

bool Distribution::Contains(double v) const {
  if (kind == DistributionKind::kCategorical) {
    return v == std::floor(v) && v >= 0 && v < static_cast<double>(choices.size());
  }
  return low <= v && v <= high;
}

bool Distribution::operator==(const Distribution& o) const {
  return kind == o.kind && low == o.low && high == o.high && log == o.log && step == o.step &&
         choices == o.choices;
}

double Distribution::TransformedLow() const {
  if (kind == DistributionKind::kCategorical) return 0;
  double lo = low;
  if (step) lo -= *step / 2;
  return log ? std::log(lo) : lo;
}

double Distribution::TransformedHigh() const {
  if (kind == DistributionKind::kCategorical) return 1;
  double hi = high;
  if (step) hi += *step / 2;
  return log ? std::log(hi) : hi;
}

ExternalValue ToExternal(const Distribution& d, double internal) {
  switch (d.kind) {
    case DistributionKind::kCategorical:
      return d.choices[static_cast<size_t>(internal)];
    case DistributionKind::kInt:
      return static_cast<int64_t>(internal);
    case DistributionKind::kFloat:
      return internal;
  }
  return internal;
}

absl::StatusOr<double> ToInternal(const Distribution& d, const ExternalValue& value) {
  if (d.kind == DistributionKind::kCategorical) {
    const auto* s = std::get_if<std::string>(&value);
    if (s != nullptr) {
      for (size_t i = 0; i < d.choices.size(); ++i) {
        if (d.choices[i] == *s) return static_cast<double>(i);
      }
    }
    return absl::InvalidArgumentError(
        absl::StrCat("\"", ExternalToString(value), "\" is not one of the choices"));
  }
  if (const auto* i = std::get_if<int64_t>(&value)) return static_cast<double>(*i);
  if (const auto* f = std::get_if<double>(&value)) return *f;
  return absl::InvalidArgumentError(
      absl::StrCat("\"", ExternalToString(value), "\" is not a number"));
}

std::string ExternalToString(const ExternalValue& value) {
  if (const auto* s = std::get_if<std::string>(&value)) return *s;
  if (const auto* i = std::get_if<int64_t>(&value)) return std::to_string(*i);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.17g", std::get<double>(value));
  return buf;
}

}  // namespace schism::tpe
