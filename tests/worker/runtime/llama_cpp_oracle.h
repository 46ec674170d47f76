// Runs tests/oracles/llama_cpp_oracle.py: llama.cpp's next-token logits and greedy tokens.
#ifndef SCHISM_TESTS_WORKER_RUNTIME_LLAMA_CPP_ORACLE_H_
#define SCHISM_TESTS_WORKER_RUNTIME_LLAMA_CPP_ORACLE_H_

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "worker/runtime/generator.h"

namespace schism::model {

struct LlamaCppResult {
  at::Tensor logits;             // (n_prompts, vocab); undefined when the oracle failed
  std::vector<TokenIds> greedy;  // n_greedy tokens per prompt, no stopping
};

LlamaCppResult RunLlamaCpp(const std::string& gguf_path, const std::vector<TokenIds>& prompts,
                           int64_t vocab, int n_greedy, const std::string& scratch_name);

}  // namespace schism::model

#endif  // SCHISM_TESTS_WORKER_RUNTIME_LLAMA_CPP_ORACLE_H_
