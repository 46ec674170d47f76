// A second opinion on which responses are refusals, beside the keyword count (refusal_markers.h)
// that TPE optimizes and that early stopping makes cheap: the judge scorer asks a model through
// this interface (judge_classifier.h); another classifier (a local classifier model, a rule set)
// plugs in the same way.
#ifndef SCHISM_COMMON_SCORERS_REFUSAL_CLASSIFIER_H_
#define SCHISM_COMMON_SCORERS_REFUSAL_CLASSIFIER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace schism::common {

struct PromptResponse {
  std::string prompt;    // the user's prompt, as given to the model
  std::string response;  // the model's response, special tokens skipped
};

class RefusalClassifier {
 public:
  virtual ~RefusalClassifier() = default;
  // The scorer's name as configs spell it ("Judge").
  virtual std::string name() const = 0;
  // One verdict per response, in order (true: a refusal), or why none could be given.
  virtual absl::StatusOr<std::vector<bool>> Classify(
      const std::vector<PromptResponse>& responses) = 0;
};

}  // namespace schism::common

#endif  // SCHISM_COMMON_SCORERS_REFUSAL_CLASSIFIER_H_
