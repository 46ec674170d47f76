// Parity with Heretic itself. Weight level: Heretic's own abliteration (heretic-llm 1.4.0,
// installed by scripts/setup as an oracle): tests/oracles/heretic_abliteration.py runs Heretic's
// Model, its residual means, main.py's direction formula and Model.abliterate on a tiny random
// Qwen2, and writes each trial's reproduce.json beside the weights Heretic's adapted model applies.
// schism computes its own directions from the same prompt files (`schism export --reproduce`,
// float32) and must write the same o_proj and down_proj weights. Skipped where heretic is not
// installed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/env.h"
#include "common/formats/safetensors.h"
#include "tests/test_support.h"

namespace {

namespace fs = std::filesystem;
using schism::formats::SafetensorsFile;
using schism::formats::SafetensorsModel;
using schism::formats::SafetensorsTensor;

constexpr int kOracleSkipped = 77;  // heretic_support.py: heretic not importable
constexpr int kLayers = 8;          // the oracle's model

std::vector<double> Values(const SafetensorsTensor* t) {
  std::vector<float> f(t == nullptr ? 0 : t->n_elements());
  if (t != nullptr) EXPECT_TRUE(schism::formats::ReadSafetensorAsFloat(*t, f.data()).ok());
  return {f.begin(), f.end()};
}

double Norm(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += (a[i] - b[i]) * (a[i] - b[i]);
  return std::sqrt(s);
}

// ‖schism − heretic‖ / ‖heretic − base‖ over one module's weight: how far apart the two tools'
// changes to it are, relative to the change itself.
struct ModuleGap {
  std::string name;
  double relative = 0;
  bool adapted = false;
};

class HereticAbliterationOracle : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(schism::testing_support::MakeTempDir("heretic_abliteration"));
    heretic_ = new std::string;
    log_ = new std::string;
    // The oracle's model takes the tokenizer files of the tiny fixture (SmolLM2's tokenizer).
    std::string fixture;
    rc_ = schism::testing_support::RunOracleOnce(
        "model_fixtures.py", {"tiny", "qwen2", "{OUT}", schism::testing_support::RealModelPath()},
        &fixture, log_);
    if (rc_ == 0) {
      rc_ = schism::testing_support::RunOracleOnce("heretic_abliteration.py",
                                                   {fixture + "/hf", "{OUT}"}, heretic_, log_);
    }
  }
  void SetUp() override {
    if (rc_ == kOracleSkipped) GTEST_SKIP() << *log_;
    ASSERT_EQ(rc_, 0) << *log_;
  }

  // Exports the oracle's trial `name` with schism and compares every adapted module; `exact`
  // compares against Heretic's ".exact" weights (full-rank, before its low-rank step).
  std::vector<ModuleGap> Compare(const std::string& name, bool exact = false) {
    const std::string& heretic = *heretic_;
    const std::string dest = *dir_ + "/schism-" + name;
    fs::remove_all(dest);
    auto out = schism::testing_support::RunCommand(
        std::string(SCHISM_BINARY) + " export --reproduce " + heretic + "/" + name +
        ".json --model " + heretic + "/model --dest " + dest + " --dtype float32 --json 2>&1");
    EXPECT_EQ(out.exit_code, 0) << out.output;
    auto base = SafetensorsModel::Open(heretic + "/model");
    auto ours = SafetensorsModel::Open(dest);
    auto theirs = SafetensorsFile::Open(heretic + "/" + name + ".safetensors");
    if (!base.ok() || !ours.ok() || !theirs.ok()) {
      ADD_FAILURE() << base.status() << " " << ours.status() << " " << theirs.status();
      return {};
    }
    std::vector<ModuleGap> gaps;
    for (int layer = 0; layer < kLayers; ++layer) {
      for (auto [component, module] :
           {std::pair{"attn.o_proj", "self_attn.o_proj"}, {"mlp.down_proj", "mlp.down_proj"}}) {
        const std::string key = "model.layers." + std::to_string(layer) + "." + module + ".weight";
        const std::string heretic_key = std::to_string(layer) + "." + component;
        const auto w = Values((*base)->Find(key));
        const auto s = Values((*ours)->Find(key));
        auto h = Values((*theirs)->Find(heretic_key));
        if (exact && (*theirs)->Find(heretic_key + ".exact") != nullptr)
          h = Values((*theirs)->Find(heretic_key + ".exact"));
        EXPECT_FALSE(w.empty() || s.size() != w.size() || h.size() != w.size()) << key;
        if (w.empty() || s.size() != w.size() || h.size() != w.size()) continue;
        ModuleGap gap{heretic_key};
        const double change = Norm(h, w);
        gap.adapted = change > 0;
        gap.relative = gap.adapted ? Norm(s, h) / change : Norm(s, w);
        gaps.push_back(gap);
      }
    }
    return gaps;
  }

  static std::string* dir_;
  static std::string* heretic_;  // the oracle's output
  static std::string* log_;
  static int rc_;
};
std::string* HereticAbliterationOracle::dir_ = nullptr;
std::string* HereticAbliterationOracle::heretic_ = nullptr;
std::string* HereticAbliterationOracle::log_ = nullptr;
int HereticAbliterationOracle::rc_ = -1;

// Measured here (2-core Xeon): at most 2.6e-6 of each module's change (2.4e-6 before the fused
// CPU kernels), both tools computing the directions from the prompts in float32 forward passes
// of their own. 1e-5, issue #17's bound, leaves 4x for another CPU's summation order and is still
// ~1e4 below the smallest real difference (see full below).
constexpr double kSameChange = 1e-5;

void ExpectSameWeights(const std::vector<ModuleGap>& gaps, int min_adapted) {
  int adapted = 0;
  double worst = 0;
  for (const ModuleGap& g : gaps) {
    adapted += g.adapted;
    worst = std::max(worst, g.relative);
    if (g.adapted) {
      EXPECT_LT(g.relative, kSameChange) << g.name;
    } else {
      EXPECT_EQ(g.relative, 0) << g.name << ": Heretic left it unchanged";
    }
  }
  EXPECT_GE(adapted, min_adapted) << "the case adapts too few modules to prove anything";
  std::printf("  %d of %zu modules adapted; worst gap %.3g of the change\n", adapted, gaps.size(),
              worst);
}

TEST_F(HereticAbliterationOracle, NoRowNormalizationGlobalDirectionGivesHereticsWeights) {
  ExpectSameWeights(Compare("none_global"), 8);
}

TEST_F(HereticAbliterationOracle, NoRowNormalizationPerLayerUnorthogonalizedGivesHereticsWeights) {
  ExpectSameWeights(Compare("none_per_layer_raw"), 8);
}

TEST_F(HereticAbliterationOracle, PreRowNormalizationGlobalDirectionGivesHereticsWeights) {
  ExpectSameWeights(Compare("pre_global"), 8);
}

TEST_F(HereticAbliterationOracle, PreRowNormalizationWinsorizedPerLayerGivesHereticsWeights) {
  ExpectSameWeights(Compare("pre_per_layer_winsorized"), 8);
}

// "full": Heretic computes the exact renormalized delta and stores a rank-3 torch.svd_lowrank
// approximation of it; schism applies the exact one (a rank-1 adapter and a row scale). schism
// equals Heretic's exact delta, and the note reports how far Heretic's adapter is from it.
TEST_F(HereticAbliterationOracle, FullRowNormalizationIsHereticsExactDeltaNotItsRankThreeAdapter) {
  ExpectSameWeights(Compare("full_global", /*exact=*/true), 8);
  double worst = 0, sum = 0;
  int n = 0;
  for (const ModuleGap& g : Compare("full_global")) {
    if (!g.adapted) continue;
    worst = std::max(worst, g.relative);
    sum += g.relative;
    ++n;
  }
  ASSERT_GT(n, 0);
  // Measured here: mean 0.114, worst 0.131 of the change. A rank-3 approximation of a rank-64
  // change cannot be exact; asserting it differs keeps this test able to fail.
  EXPECT_GT(sum / n, 1e-3);
  std::printf(
      "  Heretic's rank-3 adapter vs the exact full delta: mean %.3g, worst %.3g of the "
      "change over %d modules\n",
      sum / n, worst, n);
}

}  // namespace

namespace {

// The same trial, the same responses: tests/oracles/heretic_responses.py runs Heretic on the real
// model (SmolLM2, as a float32 Hugging Face folder) for the unmodified model and one trial
// (row_normalization "none", a global direction), 12-token greedy responses to harmful_test[:100]
// in left-padded batches of 32; `schism evaluate` with the same settings (its own directions from
// harmless/harmful_train[:32], its own forward passes and chat template) must give the identical
// response text and the same verdict for every prompt.
class HereticResponsesOracle : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    out_ = new std::string;
    hf_ = new std::string;
    log_ = new std::string;
    rc_ = schism::testing_support::RunOracleOnce(
        "model_fixtures.py", {"hf-from-gguf", schism::testing_support::RealModelPath(), "{OUT}"},
        hf_, log_);
    if (rc_ == 0) {
      rc_ = schism::testing_support::RunOracleOnce(
          "heretic_responses.py", {*hf_, schism::common::DefaultDataDir(), "{OUT}"}, out_, log_);
    }
  }
  void SetUp() override {
    if (rc_ == kOracleSkipped) GTEST_SKIP() << *log_;
    ASSERT_EQ(rc_, 0) << *log_;
  }

  struct Responses {
    std::vector<std::string> texts;
    std::vector<bool> refusals;
  };

  static Responses Heretic(const std::string& name) {
    const auto j = nlohmann::json::parse(schism::testing_support::ReadFile(*out_ + "/" + name));
    return {j["responses"].get<std::vector<std::string>>(), j["refusals"].get<std::vector<bool>>()};
  }

  static Responses Schism(const std::string& what) {
    const std::string file = schism::testing_support::MakeTempDir("heretic_responses") + "/r.jsonl";
    auto out = schism::testing_support::RunCommand(
        std::string(SCHISM_BINARY) + " evaluate --model " + *hf_ + " " + what +
        " --refusal-prompts 100 --kl-prompts 4 --direction-prompts 32 --max-response-length 12"
        " --batch-size 32 --no-early-stopping --row-normalization none --responses " +
        file + " 2>&1");
    EXPECT_EQ(out.exit_code, 0) << out.output;
    Responses r;
    std::istringstream lines(schism::testing_support::ReadFile(file));
    for (std::string line; std::getline(lines, line);) {
      const auto j = nlohmann::json::parse(line);
      r.texts.push_back(j["response"]);
      r.refusals.push_back(j["refusal"]);
    }
    return r;
  }

  static void ExpectSame(const Responses& heretic, const Responses& schism) {
    ASSERT_EQ(heretic.texts.size(), 100u);
    ASSERT_EQ(schism.texts.size(), 100u);
    int refusals = 0;
    for (size_t i = 0; i < 100; ++i) {
      EXPECT_EQ(schism.texts[i], heretic.texts[i]) << "prompt " << i;
      EXPECT_EQ(schism.refusals[i], heretic.refusals[i])
          << "prompt " << i << ": " << heretic.texts[i];
      refusals += heretic.refusals[i];
    }
    std::printf("  Heretic and schism: %d/100 refusals\n", refusals);
  }

  static std::string* out_;
  static std::string* hf_;
  static std::string* log_;
  static int rc_;
};
std::string* HereticResponsesOracle::out_ = nullptr;
std::string* HereticResponsesOracle::hf_ = nullptr;
std::string* HereticResponsesOracle::log_ = nullptr;
int HereticResponsesOracle::rc_ = -1;

TEST_F(HereticResponsesOracle, TheUnmodifiedModelGivesHereticsResponsesAndBaselineRefusals) {
  const Responses heretic = Heretic("base.json");
  ExpectSame(heretic, Schism("--baseline"));
  // The verdicts would agree trivially if nothing refused: this model refuses a few of these.
  EXPECT_GT(std::count(heretic.refusals.begin(), heretic.refusals.end(), true), 0);
}

TEST_F(HereticResponsesOracle, AnAbliteratedTrialGivesHereticsResponses) {
  const Responses heretic = Heretic("trial.json");
  ExpectSame(heretic, Schism("--params " + *out_ + "/params.json"));
  const Responses base = Heretic("base.json");
  int changed = 0;
  for (size_t i = 0; i < heretic.texts.size() && i < base.texts.size(); ++i)
    changed += heretic.texts[i] != base.texts[i];
  EXPECT_GT(changed, 50) << "the trial must change most responses to prove the ablation matches";
}

}  // namespace
