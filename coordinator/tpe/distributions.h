// Parameter distributions of a TPE search space, as Optuna defines them
// (docs/algorithm.md#distributions): float (optionally log or stepped), int (optionally log or
// stepped) and categorical. Values travel in Optuna's "internal representation": a double (the
// value itself, or the index of a categorical choice).
#ifndef SCHISM_COORDINATOR_TPE_DISTRIBUTIONS_H_
#define SCHISM_COORDINATOR_TPE_DISTRIBUTIONS_H_

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"

namespace schism::tpe {

enum class DistributionKind { kFloat, kInt, kCategorical };

struct Distribution {
  DistributionKind kind = DistributionKind::kFloat;
  double low = 0, high = 0;
  bool log = false;
  std::optional<double> step;        // floats: optional; ints: always set (default 1)
  std::vector<std::string> choices;  // categorical only

  // Constructors apply Optuna's rules (a stepped high is moved down onto the grid) and reject
  // invalid combinations with a message naming the problem.
  static absl::StatusOr<Distribution> Float(double low, double high, bool log = false,
                                            std::optional<double> step = std::nullopt);
  static absl::StatusOr<Distribution> Int(int64_t low, int64_t high, bool log = false,
                                          int64_t step = 1);
  static absl::StatusOr<Distribution> Categorical(std::vector<std::string> choices);

  // Optuna's single(): only one value is possible, so sampling consumes no random numbers.
  bool Single() const;
  // Whether an internal value lies inside the distribution (Optuna's _contains).
  bool Contains(double internal) const;
  bool operator==(const Distribution& other) const;

  // Bounds of the transformed space both samplers work in (spec §2 table).
  double TransformedLow() const;
  double TransformedHigh() const;
  bool IsDiscreteNumeric() const {
    return kind != DistributionKind::kCategorical && step.has_value();
  }
};

// A parameter value in external form: what the objective sees.
using ExternalValue = std::variant<double, int64_t, std::string>;

ExternalValue ToExternal(const Distribution& d, double internal);
absl::StatusOr<double> ToInternal(const Distribution& d, const ExternalValue& value);
std::string ExternalToString(const ExternalValue& value);

}  // namespace schism::tpe

#endif  // SCHISM_COORDINATOR_TPE_DISTRIBUTIONS_H_
