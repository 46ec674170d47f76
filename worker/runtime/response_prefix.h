// The response prefix (docs/algorithm.md#response-prefix): the text every greedy response of the
// model starts with (e.g. an empty <think></think> block), which is appended to every prompt so
// that refusal and KL scores look past it. Chain-of-thought openers are replaced by their closed
// block.
#ifndef SCHISM_WORKER_RUNTIME_RESPONSE_PREFIX_H_
#define SCHISM_WORKER_RUNTIME_RESPONSE_PREFIX_H_

#include <string>
#include <utility>
#include <vector>

#include "common/tokenizer/bpe_tokenizer.h"
#include "worker/runtime/generator.h"

namespace schism::model {

// Longest common prefix of the greedy responses to `prompts` (at most `max_tokens` each), with
// trailing spaces stripped. Rows stop as soon as they leave the common prefix seen so far.
std::string CommonResponsePrefix(const Transformer& model, const tokenizer::BpeTokenizer& tokenizer,
                                 const std::vector<TokenIds>& prompts,
                                 const GreedyOptions& options);

// If `prefix` starts with a chain-of-thought opener (common::DefaultChainOfThoughtSkips), the
// closed block to use instead; else `prefix` unchanged.
std::string ApplyChainOfThoughtSkip(const std::string& prefix);

}  // namespace schism::model

#endif  // SCHISM_WORKER_RUNTIME_RESPONSE_PREFIX_H_
