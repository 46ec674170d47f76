#include "worker/prompt_encoding.h"

#include "common/prompt_set.h"
#include "worker/runtime/trial_evaluator.h"

namespace schism::worker {
namespace {

absl::StatusOr<std::vector<model::TokenIds>> EncodeHere(
    const model::LoadedModel& model, const v1::StudySpec& spec, const v1::PromptSet& set,
    const std::string& response_prefix, size_t limit, std::vector<std::string>* texts) {
  auto lines = common::LoadPromptLines(set.path(), set.split(), set.column());
  if (!lines.ok()) return lines.status();
  if (lines->size() > limit) lines->resize(limit);
  for (std::string& line : *lines) {
    if (!set.prefix().empty()) line = set.prefix() + " " + line;
    if (!set.suffix().empty()) line = line + " " + set.suffix();
  }
  const std::string& system = set.has_system_prompt() ? set.system_prompt() : spec.system_prompt();
  auto encoded = model::EncodeChatPrompts(model, *lines, system, response_prefix);
  if (texts != nullptr) *texts = std::move(*lines);
  return encoded;
}

}  // namespace

absl::StatusOr<std::vector<model::TokenIds>> EncodePromptSet(
    const model::LoadedModel& model, const v1::StudySpec& spec, const v1::PromptSet& set,
    const std::string& response_prefix, size_t limit, std::vector<std::string>* texts) {
  auto encoded = EncodeHere(model, spec, set, response_prefix, limit, texts);
  if (const model::TensorParallel* tp = model.transformer->tensor_parallel()) {
    if (auto agreed = tp->Agree(encoded.status()); !agreed.ok()) return agreed;
  }
  return encoded;
}

}  // namespace schism::worker
