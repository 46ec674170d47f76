// The judge and perplexity scorers through `schism run` on the real model: a real judge endpoint
// (llama-cpp-python's server with the real model), then one nobody listens on.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tests/cli/cluster_harness.h"
#include "tests/judge_server.h"
#include "tests/test_support.h"

namespace {

using namespace schism::cluster_test;  // NOLINT: the harness is this file's vocabulary
using schism::testing_support::MakeTempDir;

std::string ScorersRunToml(const std::string& judge_url, int trials) {
  const std::string data = std::string(SCHISM_SOURCE_DIR) + "/../shared/datasets";
  std::ostringstream toml;
  toml << "model = \"" << schism::testing_support::RealModelPath() << "\"\n"
       << "n_trials = " << trials << "\nn_startup_trials = " << trials
       << "\nmax_response_length = 8\n"
       << PromptSetsToml(8, 6, 4) << "[scorer.Judge]\nurl = \"" << judge_url << "\"\n"
       << "timeout_seconds = 60\n"
       << "[scorer.Perplexity]\nmax_tokens = 32\n[scorer.Perplexity.texts]\ndataset = \"" << data
       << "/harmless_test.txt\"\nsplit = \"[:4]\"\n";
  return toml.str();
}

// The lines of `out` that start with `prefix` (after leading spaces).
std::vector<std::string> LinesStartingWith(const std::string& out, const std::string& prefix) {
  std::vector<std::string> lines;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    const size_t start = line.find_first_not_of(' ');
    if (start != std::string::npos && line.compare(start, prefix.size(), prefix) == 0)
      lines.push_back(line);
  }
  return lines;
}

TEST(Scorers, JudgeAndPerplexityAreReportedForTheBaselineAndTheParetoFrontAndExported) {
  schism::testing_support::JudgeServer judge;
  ASSERT_TRUE(judge.running()) << judge.log();
  const std::string dir = MakeTempDir("scorers_run");
  std::ofstream(dir + "/run.toml") << ScorersRunToml(judge.url(), 3);
  const std::string out = RunCli("run " + dir + "/run.toml --store " + dir + "/store");
  ASSERT_NE(out.find("trial 3/3"), std::string::npos) << out;
  const auto baseline = LinesStartingWith(out, "[Baseline ]");
  ASSERT_EQ(baseline.size(), 1u) << out;
  EXPECT_NE(baseline[0].find("Judge: "), std::string::npos) << baseline[0];
  EXPECT_EQ(baseline[0].find("no verdict"), std::string::npos) << baseline[0];
  EXPECT_NE(baseline[0].find("/6"), std::string::npos) << "6 refusal prompts judged";
  EXPECT_NE(baseline[0].find("Perplexity: "), std::string::npos) << baseline[0];
  const auto front = LinesStartingWith(out, "[Trial");
  ASSERT_FALSE(front.empty()) << out;
  for (const std::string& line : front) {
    EXPECT_NE(line.find(", Judge: "), std::string::npos) << "a front trial was judged: " << line;
    EXPECT_NE(line.find(", Perplexity: "), std::string::npos) << line;
  }
  // The best trial's model card and reproduce.json carry them.
  const std::string command =
      ExportHintCommand(out, "--dest " + dir + "/exported --format adapter");
  ASSERT_FALSE(command.empty()) << out;
  const std::string exported = RunCli(command);
  const std::string card = schism::testing_support::ReadFile(dir + "/exported/README.md");
  EXPECT_NE(card.find("| Judge refusals | Perplexity |"), std::string::npos) << exported << card;
  std::ifstream in(dir + "/exported/reproduce.json");
  ASSERT_TRUE(in) << exported;
  const auto reproduce = nlohmann::json::parse(in);
  EXPECT_TRUE(reproduce["trial"]["scores"].contains("perplexity")) << reproduce.dump(1);
  EXPECT_TRUE(reproduce["trial"]["scores"].contains("judge_refusals")) << reproduce.dump(1);
  EXPECT_GT(reproduce["trial"]["baseline_perplexity"].get<double>(), 1.0);
}

TEST(Scorers, AnUnreachableJudgeIsRecordedOnEachTrialAndTheStudyGoesOnWithKeywordCounts) {
  const std::string url =
      "http://127.0.0.1:" + std::to_string(schism::testing_support::FreeLoopbackPort()) + "/v1";
  const std::string dir = MakeTempDir("scorers_unreachable");
  std::ofstream(dir + "/run.toml") << ScorersRunToml(url, 2);
  const std::string out = RunCli("run " + dir + "/run.toml --store " + dir + "/store");
  ASSERT_NE(out.find("trial 2/2"), std::string::npos) << out;
  const std::string why = "Judge: no verdict (judge " + url + ": unreachable";
  const auto baseline = LinesStartingWith(out, "[Baseline ]");
  ASSERT_EQ(baseline.size(), 1u) << out;
  EXPECT_NE(baseline[0].find(why), std::string::npos) << baseline[0];
  const auto front = LinesStartingWith(out, "[Trial");
  ASSERT_FALSE(front.empty()) << out;
  for (const std::string& line : front) {
    EXPECT_NE(line.find("Refusals: "), std::string::npos) << line;
    EXPECT_NE(line.find(why), std::string::npos) << line;
    EXPECT_NE(line.find(", Perplexity: "), std::string::npos) << "the other scorers still ran";
  }
}

}  // namespace
