#include "tests/worker/runtime/llama_cpp_oracle.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/test_support.h"

namespace schism::model {

namespace {

// Both oracles take (model, prompts.json, out dir, n_greedy) and write logits.f32, greedy.json.
LlamaCppResult RunForwardOracle(bool torch_python, const std::string& script,
                                const std::string& model, const nlohmann::json& prompts,
                                int64_t vocab, int n_greedy, const std::string& scratch_name) {
  const std::string dir = testing_support::MakeTempDir(scratch_name);
  std::ofstream(dir + "/prompts.json") << prompts.dump();
  std::string log;
  const std::vector<std::string> args = {model, dir + "/prompts.json", dir,
                                         std::to_string(n_greedy)};
  const int rc = torch_python ? testing_support::RunTorchOracle(script, args, &log)
                              : testing_support::RunOracle(script, args, &log);
  EXPECT_EQ(rc, 0) << log;
  LlamaCppResult result;
  if (rc != 0) return result;
  std::vector<float> flat = testing_support::ReadFloats(dir + "/logits.f32");
  result.logits =
      at::from_blob(flat.data(), {static_cast<int64_t>(prompts.size()), vocab}, at::kFloat).clone();
  result.greedy = nlohmann::json::parse(testing_support::ReadFile(dir + "/greedy.json"))
                      .get<std::vector<TokenIds>>();
  if (std::filesystem::exists(dir + "/tokens.json")) {
    result.tokens = nlohmann::json::parse(testing_support::ReadFile(dir + "/tokens.json"))
                        .get<std::vector<TokenIds>>();
  }
  return result;
}

}  // namespace

LlamaCppResult RunLlamaCpp(const std::string& gguf_path, const std::vector<TokenIds>& prompts,
                           int64_t vocab, int n_greedy, const std::string& scratch_name) {
  return RunForwardOracle(false, "llama_cpp_oracle.py", gguf_path, prompts, vocab, n_greedy,
                          scratch_name);
}

LlamaCppResult RunLlamaCppOnTexts(const std::string& gguf_path,
                                  const std::vector<std::string>& texts, int64_t vocab,
                                  int n_greedy, const std::string& scratch_name) {
  return RunForwardOracle(false, "llama_cpp_oracle.py", gguf_path, texts, vocab, n_greedy,
                          scratch_name);
}

LlamaCppResult RunTransformers(const std::string& hf_folder, const std::vector<TokenIds>& prompts,
                               int64_t vocab, int n_greedy, const std::string& scratch_name) {
  return RunForwardOracle(true, "transformers_oracle.py", hf_folder, prompts, vocab, n_greedy,
                          scratch_name);
}

}  // namespace schism::model
