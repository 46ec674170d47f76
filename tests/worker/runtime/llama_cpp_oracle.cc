#include "tests/worker/runtime/llama_cpp_oracle.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/test_support.h"

namespace schism::model {

LlamaCppResult RunLlamaCpp(const std::string& gguf_path, const std::vector<TokenIds>& prompts,
                           int64_t vocab, int n_greedy, const std::string& scratch_name) {
  const std::string dir = testing_support::MakeTempDir(scratch_name);
  std::ofstream(dir + "/prompts.json") << nlohmann::json(prompts).dump();
  std::string log;
  const int rc = testing_support::RunOracle(
      "llama_cpp_oracle.py", {gguf_path, dir + "/prompts.json", dir, std::to_string(n_greedy)},
      &log);
  EXPECT_EQ(rc, 0) << log;
  LlamaCppResult result;
  if (rc != 0) return result;
  std::vector<float> flat = testing_support::ReadFloats(dir + "/logits.f32");
  result.logits =
      at::from_blob(flat.data(), {static_cast<int64_t>(prompts.size()), vocab}, at::kFloat).clone();
  result.greedy = nlohmann::json::parse(testing_support::ReadFile(dir + "/greedy.json"))
                      .get<std::vector<TokenIds>>();
  return result;
}

}  // namespace schism::model
