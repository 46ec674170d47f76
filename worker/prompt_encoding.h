// A study's prompt sets as the worker feeds them to the model: Heretic's load_prompts (the split's
// rows, each "prefix prompt suffix") chat-encoded with the set's system prompt, else the study's.
#ifndef SCHISM_WORKER_PROMPT_ENCODING_H_
#define SCHISM_WORKER_PROMPT_ENCODING_H_

#include <cstddef>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "schism/v1/study.pb.h"
#include "worker/runtime/generator.h"
#include "worker/runtime/model_loader.h"

namespace schism::worker {

// The first `limit` rows of `set` (prefix and suffix space-joined to each when the set has them),
// rendered by the model's chat template with `set`'s system prompt when it has one (even an
// empty one), else `spec`'s, then `response_prefix`, and tokenized. `texts` (optional) receives
// the rows as joined. With tensor parallelism every rank reads the files itself and all of them
// go on only if all could (a file missing on one host fails the step everywhere, at once).
absl::StatusOr<std::vector<model::TokenIds>> EncodePromptSet(
    const model::LoadedModel& model, const v1::StudySpec& spec, const v1::PromptSet& set,
    const std::string& response_prefix, size_t limit = std::numeric_limits<size_t>::max(),
    std::vector<std::string>* texts = nullptr);

}  // namespace schism::worker

#endif  // SCHISM_WORKER_PROMPT_ENCODING_H_
