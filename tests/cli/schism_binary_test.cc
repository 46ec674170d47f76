// Runs the real `schism` binary as a child process.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/env.h"
#include "common/prompt_set.h"
#include "tests/test_support.h"

namespace {

using Outcome = schism::testing_support::CommandOutcome;

Outcome RunSchism(const std::string& args, bool with_stderr = true) {
  return schism::testing_support::RunCommand(std::string(SCHISM_BINARY) + " " + args +
                                             (with_stderr ? " 2>&1" : " 2>/dev/null"));
}

TEST(SchismBinary, HelpListsEverySubcommandOfTheDesign) {
  Outcome help = RunSchism("--help");
  EXPECT_EQ(help.exit_code, 0);
  for (const char* sub : {"run", "coordinator", "worker", "export-worker", "submit", "status",
                          "trials", "export", "evaluate", "generate", "chat", "tpe-replay"}) {
    EXPECT_NE(help.output.find(std::string("\n  ") + sub + " "), std::string::npos) << sub;
  }
}

TEST(SchismBinary, EveryCommandPrintsItsHelpFromItsFlagTable) {
  for (const char* sub : {"run", "coordinator", "worker", "export-worker", "submit", "status",
                          "trials", "export", "evaluate", "generate", "chat", "tpe-replay"}) {
    Outcome help = RunSchism(std::string(sub) + " --help");
    EXPECT_EQ(help.exit_code, 0) << sub << "\n" << help.output;
    EXPECT_EQ(help.output.rfind(std::string("usage: schism ") + sub + " ", 0), 0u) << help.output;
    EXPECT_NE(help.output.find("\n  --help "), std::string::npos) << help.output;
    EXPECT_EQ(RunSchism(std::string("help ") + sub).output, help.output) << sub;
  }
  // The disagreements the table ended: flags that were taken but missing from the usage.
  EXPECT_NE(RunSchism("run --help").output.find("\n  --threads T "), std::string::npos);
  EXPECT_NE(RunSchism("worker --help").output.find("\n  --device cpu|cuda:N "), std::string::npos);
  EXPECT_NE(RunSchism("worker --help").output.find("\n  --threads T "), std::string::npos);
  Outcome unknown = RunSchism("worker --coordinator localhost:1 --trails-per-batch 2");
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.output.find("unknown flag --trails-per-batch"), std::string::npos)
      << unknown.output;
  EXPECT_NE(unknown.output.find("usage: schism worker --coordinator H:P"), std::string::npos)
      << unknown.output;
  Outcome valued = RunSchism("trials STUDY --coordinator localhost:1 --json=yes");
  EXPECT_EQ(valued.exit_code, 2);
  EXPECT_NE(valued.output.find("flag --json takes no value"), std::string::npos) << valued.output;
}

TEST(SchismBinary, UnknownCommandIsAUsageError) {
  Outcome outcome = RunSchism("frobnicate");
  EXPECT_EQ(outcome.exit_code, 2);
  EXPECT_NE(outcome.output.find("unknown command \"frobnicate\""), std::string::npos);
  EXPECT_EQ(RunSchism("").exit_code, 2);
}

// `schism run` checks its model and prompt sets before it loads anything or creates its store.
TEST(SchismBinary, RunRefusesAMissingModelOrAnUnreadablePromptSetBeforeStarting) {
  const std::string dir = schism::testing_support::MakeTempDir("run_checks");
  const std::string data = std::string(SCHISM_SOURCE_DIR) + "/../shared/datasets";
  auto run = [&](const std::string& name, const std::string& toml) {
    std::ofstream(dir + "/" + name + ".toml") << toml;
    return RunSchism("run " + dir + "/" + name + ".toml --store " + dir + "/store-" + name);
  };
  const std::string model = "model = \"" + schism::testing_support::RealModelPath() + "\"\n";
  Outcome no_model = run("no_model", "model = \"" + dir + "/absent.gguf\"\n");
  EXPECT_EQ(no_model.exit_code, 2) << no_model.output;
  EXPECT_NE(no_model.output.find("absent.gguf: no such file or folder"), std::string::npos)
      << no_model.output;
  Outcome bad_path = run("bad_path", model + "[good_prompts]\npath = \"" + dir + "/nope.txt\"\n");
  EXPECT_EQ(bad_path.exit_code, 2) << bad_path.output;
  EXPECT_NE(bad_path.output.find("good_prompts: prompt file " + dir + "/nope.txt: cannot open"),
            std::string::npos)
      << bad_path.output;
  Outcome bad_split = run("bad_split", model + "[bad_evaluation_prompts]\npath = \"" + data +
                                           "/harmful_test.txt\"\nsplit = \"test[:10]\"\n");
  EXPECT_EQ(bad_split.exit_code, 2) << bad_split.output;
  EXPECT_NE(bad_split.output.find("refusal prompts (bad_evaluation_prompts): split \"test[:10]\""),
            std::string::npos)
      << bad_split.output;
  for (const char* name : {"no_model", "bad_path", "bad_split"}) {
    EXPECT_FALSE(std::filesystem::exists(dir + "/store-" + name)) << name << ": no store made";
  }
}

TEST(SchismBinary, GenerateAnswersWithTheRealModel) {
  Outcome outcome = RunSchism("generate --model " + schism::testing_support::RealModelPath() +
                              " --prompt 'What is the capital of France?' --max-new-tokens 12");
  EXPECT_EQ(outcome.exit_code, 0) << outcome.output;
  EXPECT_NE(outcome.output.find("Paris"), std::string::npos) << outcome.output;
  EXPECT_NE(outcome.output.find("prompt tokens"), std::string::npos) << outcome.output;
}

TEST(SchismBinary, EvaluateRefusesAConfigFileItWouldNotRead) {
  Outcome outcome = RunSchism("evaluate --model x.gguf --baseline study.toml");
  EXPECT_EQ(outcome.exit_code, 2) << outcome.output;
  EXPECT_NE(outcome.output.find("unexpected argument \"study.toml\""), std::string::npos)
      << outcome.output;
}

TEST(SchismBinary, GenerateReportsBadInputSpecifically) {
  Outcome missing = RunSchism("generate --model /nonexistent/m.gguf --prompt hi");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.output.find("/nonexistent/m.gguf"), std::string::npos) << missing.output;
  Outcome no_prompt = RunSchism("generate --model " + schism::testing_support::RealModelPath());
  EXPECT_EQ(no_prompt.exit_code, 2);
  EXPECT_NE(no_prompt.output.find("--prompt is required"), std::string::npos) << no_prompt.output;
  Outcome bad_tokens = RunSchism("generate --model x.gguf --prompt hi --max-new-tokens many");
  EXPECT_EQ(bad_tokens.exit_code, 2);
  EXPECT_NE(bad_tokens.output.find("--max-new-tokens"), std::string::npos) << bad_tokens.output;
}

TEST(SchismBinary, ChatKeepsTheConversationAcrossTurns) {
  const std::string input = schism::testing_support::MakeTempDir("chat") + "/input.txt";
  std::ofstream(input) << "What is the capital of France?\n/reset\nSay hello.\n/exit\n";
  Outcome outcome = RunSchism("chat --max-new-tokens 10 --model " +
                              schism::testing_support::RealModelPath() + " < " + input);
  EXPECT_EQ(outcome.exit_code, 0) << outcome.output;
  EXPECT_NE(outcome.output.find("Paris"), std::string::npos) << outcome.output;
  EXPECT_NE(outcome.output.find("/reset starts over"), std::string::npos) << outcome.output;
}

TEST(SchismBinary, TpeReplayPrintsOneLinePerAskAndRejectsBadFiles) {
  const std::string dir = schism::testing_support::MakeTempDir("tpe_replay");
  std::ofstream(dir + "/space.json")
      << R"({"directions": ["minimize"], "n_startup_trials": 2, "seed": 1, "params": [)"
      << R"({"name": "x", "type": "float", "low": 0, "high": 1},)"
      << R"({"name": "c", "type": "categorical", "choices": ["a", "b"]}]})";
  std::ofstream told(dir + "/told.jsonl");
  for (int i = 0; i < 5; ++i) {
    told << "{\"ask\": " << i << "}\n{\"tell\": " << i << ", \"values\": [" << i * 0.1 << "]}\n";
  }
  told.close();
  Outcome ok = RunSchism("tpe-replay " + dir + "/space.json " + dir + "/told.jsonl --seed 9");
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_NE(ok.output.find("T4 {\"c\": "), std::string::npos) << ok.output;
  EXPECT_EQ(std::count(ok.output.begin(), ok.output.end(), '\n'), 5) << ok.output;
  Outcome missing = RunSchism("tpe-replay " + dir + "/nope.json " + dir + "/told.jsonl");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.output.find("cannot read"), std::string::npos) << missing.output;
  Outcome help = RunSchism("tpe-replay --help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.output.find("TOLD.jsonl: one event per line"), std::string::npos);
}

TEST(SchismBinary, EvaluatePrintsBaselineAndTrialScores) {
  const std::string model = schism::testing_support::RealModelPath();
  const std::string dir = schism::testing_support::MakeTempDir("evaluate");
  const std::string small =
      " --refusal-prompts 4 --kl-prompts 4 --direction-prompts 8 --max-response-length 16";
  Outcome baseline = RunSchism("evaluate --model " + model + " --baseline --save-directions " +
                               dir + "/r.bin" + small);
  EXPECT_EQ(baseline.exit_code, 0) << baseline.output;
  EXPECT_NE(baseline.output.find("/4\nkl_divergence: 0.000000"), std::string::npos)
      << baseline.output;
  std::ofstream(dir + "/trial.json")
      << R"({"direction_scope": "per layer", "direction_index": 15, "attn.o_proj.max_weight": 1.2,)"
      << R"("attn.o_proj.max_weight_position": 20, "attn.o_proj.min_weight": 0.5,)"
      << R"("attn.o_proj.min_weight_distance": 10, "mlp.down_proj.max_weight": 0.5,)"
      << R"("mlp.down_proj.max_weight_position": 20, "mlp.down_proj.min_weight": 0.5,)"
      << R"("mlp.down_proj.min_weight_distance": 10})";
  Outcome trial =
      RunSchism("evaluate --model " + model + " --params " + dir + "/trial.json --directions " +
                    dir + "/r.bin --json --responses " + dir + "/responses.jsonl" + small,
                /*with_stderr=*/false);
  EXPECT_EQ(trial.exit_code, 0) << trial.output;
  EXPECT_NE(trial.output.find("\"refusal_prompts\":4"), std::string::npos) << trial.output;
  EXPECT_EQ(trial.output.find("\"kl_divergence\":0.0,"), std::string::npos) << trial.output;
  // --responses: each refusal prompt (harmful_test[:4], in order) with its response and verdict,
  // the verdicts adding up to the printed count.
  auto prompts = schism::common::LoadPromptLines(
      schism::common::DefaultDataDir() + "/harmful_test.txt", "[:4]");
  ASSERT_TRUE(prompts.ok()) << prompts.status();
  std::ifstream lines(dir + "/responses.jsonl");
  std::string line;
  int n = 0, refusals = 0;
  while (std::getline(lines, line)) {
    const auto r = nlohmann::json::parse(line);
    ASSERT_LT(n, 4) << line;
    EXPECT_EQ(r["prompt"], (*prompts)[n]);
    EXPECT_FALSE(r["response"].get<std::string>().empty()) << line;
    refusals += r["refusal"].get<bool>();
    ++n;
  }
  EXPECT_EQ(n, 4);
  EXPECT_EQ(refusals, nlohmann::json::parse(trial.output)["refusals"].get<int>()) << trial.output;
  Outcome with_reproduce = RunSchism("evaluate --reproduce x.json --responses r.jsonl");
  EXPECT_EQ(with_reproduce.exit_code, 2);
  EXPECT_NE(with_reproduce.output.find("--responses is not available with --reproduce"),
            std::string::npos)
      << with_reproduce.output;
  std::ofstream(dir + "/bad.json") << R"({"direction_scope": "sideways"})";
  Outcome bad = RunSchism("evaluate --model " + model + " --params " + dir + "/bad.json");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.output.find("sideways"), std::string::npos) << bad.output;
}

TEST(SchismBinary, ExportCommandsRejectMissingOrBadFlagsAsUsageErrors) {
  Outcome no_root = RunSchism("export-worker --coordinator localhost:1");
  EXPECT_EQ(no_root.exit_code, 2);
  EXPECT_NE(no_root.output.find("--output-root"), std::string::npos) << no_root.output;
  Outcome bad_root =
      RunSchism("export-worker --coordinator localhost:1 --output-root /nonexistent/exports");
  EXPECT_EQ(bad_root.exit_code, 2);
  EXPECT_NE(bad_root.output.find("/nonexistent/exports is not a directory"), std::string::npos)
      << bad_root.output;
  Outcome no_dest = RunSchism("export --model m.gguf --params p.json --directions r.bin");
  EXPECT_EQ(no_dest.exit_code, 2);
  EXPECT_NE(no_dest.output.find("--dest is required"), std::string::npos) << no_dest.output;
  Outcome remote = RunSchism("export STUDY three --dest x --coordinator localhost:1");
  EXPECT_EQ(remote.exit_code, 2);
  EXPECT_NE(remote.output.find("usage: schism export STUDY TRIAL"), std::string::npos)
      << remote.output;
}

// Each way --tensor-parallel's flags can disagree is a usage error that says which, before the
// worker connects to anything.
TEST(SchismBinary, WorkerRejectsTensorParallelFlagsThatDoNotFit) {
  const std::string worker = "env -u SLURM_PROCID -u SLURM_NTASKS " + std::string(SCHISM_BINARY) +
                             " worker --coordinator localhost:1 ";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--tp-rank 1", "--tp-rank and --tp-master need --tensor-parallel N > 1"},
      {"--tensor-parallel 0", "--tensor-parallel must be in [1, 64], got 0"},
      {"--tensor-parallel 2 --tp-rank 2 --tp-master 127.0.0.1:1", "--tp-rank 2 is outside [0, 2)"},
      {"--tensor-parallel 2 --tp-rank 1", "--tp-rank needs --tp-master HOST:PORT"},
      {"--tensor-parallel 2 --tp-rank 1 --tp-master nohost", "expected HOST:PORT, got \"nohost\""},
      {"--tensor-parallel 2 --tp-master 127.0.0.1:1", "takes the rank from srun (SLURM_PROCID)"},
  };
  for (const auto& [flags, message] : cases) {
    Outcome outcome = schism::testing_support::RunCommand(worker + flags + " 2>&1");
    EXPECT_EQ(outcome.exit_code, 2) << flags;
    EXPECT_NE(outcome.output.find(message), std::string::npos) << flags << ": " << outcome.output;
  }
  Outcome srun = schism::testing_support::RunCommand(
      "SLURM_PROCID=0 SLURM_NTASKS=3 " + std::string(SCHISM_BINARY) +
      " worker --coordinator localhost:1 --tensor-parallel 2 --tp-master 127.0.0.1:1 2>&1");
  EXPECT_EQ(srun.exit_code, 2);
  EXPECT_NE(srun.output.find("needs 2 tasks in the step, not 3"), std::string::npos) << srun.output;
}

// Heretic 1.4.0's own config.default.toml (every Settings field at its default, written from the
// installed heretic-llm's Settings by tests/oracles/heretic_default_config.py, the prompt sets
// pointed at the shared datasets and the model at the real one) runs unchanged under
// `schism run`, for one trial (--trials overrides its n_trials = 200): Heretic's 400+400 direction
// prompts, 100 refusal prompts of 100 tokens, batch_size 0 (auto), its checkpoint folder.
// Skipped where heretic-llm is not installed (scripts/setup installs it).
TEST(SchismBinary, RunAcceptsHereticsOwnDefaultConfigUnchanged) {
  std::string dir, log;
  const int rc = schism::testing_support::RunOracleOnce(
      "heretic_default_config.py",
      {schism::testing_support::RealModelPath(), schism::common::DefaultDataDir(), "{OUT}"}, &dir,
      &log);
  if (rc == 77) GTEST_SKIP() << log;
  ASSERT_EQ(rc, 0) << log;
  const std::string work = schism::testing_support::MakeTempDir("heretic_default_run");
  Outcome run =
      schism::testing_support::RunCommand("cd " + work + " && " + SCHISM_BINARY + " run " + dir +
                                          "/config.default.toml --trials 1 2>&1");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("[finished] trial 1/1"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("[Trial   0] Refusals:"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("/100, KL divergence:"), std::string::npos)
      << "bad_evaluation_prompts' [:100]\n"
      << run.output;
  EXPECT_TRUE(std::filesystem::is_directory(work + "/checkpoints"))
      << "the store goes to study_checkpoint_dir";
}

}  // namespace
