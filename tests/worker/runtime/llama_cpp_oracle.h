// Runs the forward-pass oracles: tests/oracles/llama_cpp_oracle.py (llama.cpp on a GGUF) and
// tests/oracles/transformers_oracle.py (Hugging Face transformers on a model folder), each giving
// next-token logits and greedy tokens.
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
  std::vector<TokenIds> tokens;  // each prompt's ids (llama.cpp's tokenization of a text)
};

LlamaCppResult RunLlamaCpp(const std::string& gguf_path, const std::vector<TokenIds>& prompts,
                           int64_t vocab, int n_greedy, const std::string& scratch_name);

// The same for texts, which llama.cpp tokenizes (result.tokens).
LlamaCppResult RunLlamaCppOnTexts(const std::string& gguf_path,
                                  const std::vector<std::string>& texts, int64_t vocab,
                                  int n_greedy, const std::string& scratch_name);

// The same from transformers in float32 (eager attention), on a Hugging Face folder.
LlamaCppResult RunTransformers(const std::string& hf_folder, const std::vector<TokenIds>& prompts,
                               int64_t vocab, int n_greedy, const std::string& scratch_name);

}  // namespace schism::model

#endif  // SCHISM_TESTS_WORKER_RUNTIME_LLAMA_CPP_ORACLE_H_
