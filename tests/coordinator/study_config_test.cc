// Study config files: Heretic's keys, [cluster], and the export defaults.
#include "coordinator/study_config.h"
#include "coordinator/study_spec.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>

#include <nlohmann/json.hpp>

#include "common/env.h"
#include "coordinator/objectives.h"
#include "coordinator/study_manager.h"
#include "tests/test_support.h"

namespace schism::coordinator {
namespace {

TEST(StudyConfig, ReadsHereticKeysClusterAndExportDefaults) {
  auto spec = StudySpecFromToml(R"(
model = "m.gguf"
quantization = "nf4"
n_trials = 50
max_shard_size = "2GB"
[export]
format = "both"
dtype = "bfloat16"
[cluster]
trials_per_worker = 4
)",
                                "study.toml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->model(), "m.gguf");
  EXPECT_EQ(spec->n_trials(), 50);
  EXPECT_EQ(spec->max_shard_bytes(), 2000000000ull);
  EXPECT_EQ(spec->export_format(), "both");
  EXPECT_EQ(spec->export_dtype(), "bfloat16");
  EXPECT_EQ(spec->trials_per_lease(), 4);
  EXPECT_TRUE(spec->orthogonalize_direction());
  EXPECT_EQ(StudySpecFromToml("max_shard_size = 1048576", "s.toml")->max_shard_bytes(), 1048576ull);
}

TEST(StudyConfig, BadValuesNameTheKey) {
  for (const auto& [text, key] : std::vector<std::pair<std::string, std::string>>{
           {"max_shard_size = \"lots\"", "max_shard_size"},
           {"max_shard_size = 0", "max_shard_size"},
           {"[export]\nformat = \"gguf\"", "export.format"},
           {"[export]\ndtype = \"int8\"", "export.dtype"},
           {"[export]\nlocation = \"x\"", "export.location"},
           {"n_trials = \"many\"", "n_trials"},
           {"colour = 1", "colour"},
           {"[cluster]\nheartbeat_seconds = 5", "cluster.heartbeat_seconds"},
           {"n_startup_trials = 0", "n_startup_trials"},
           {"max_response_length = 0", "max_response_length"}}) {
    auto spec = StudySpecFromToml(text, "study.toml");
    ASSERT_FALSE(spec.ok()) << text;
    EXPECT_NE(spec.status().message().find(key), std::string::npos) << spec.status();
    EXPECT_NE(spec.status().message().find("study.toml"), std::string::npos) << spec.status();
  }
  auto broken = StudySpecFromToml("n_trials = = 3", "broken.toml");
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.status().message().find("broken.toml:1"), std::string::npos) << broken.status();
}

// Every key of Heretic 1.4.0's Settings (heretic/config.py in the heretic-llm 1.4.0 wheel) and
// of its DatasetSpecification: each row either shows the key changing the spec, or shows it
// refused by name with a reason. Keys that only accept the value schism's behaviour already has
// (print_responses = false, ...) show the other value refused: nothing is accepted and ignored.
struct KeyCase {
  std::string toml;
  std::string error;  // empty: accepted, and `check` sees the effect
  std::function<bool(const v1::StudySpec&)> check;
};

const std::vector<std::pair<std::string, std::vector<KeyCase>>>& HereticKeyCases() {
  using S = v1::StudySpec;
  static const auto* cases = new std::vector<std::pair<std::string, std::vector<KeyCase>>>{
      {"model", {{"model = \"m\"", "", [](const S& s) { return s.model() == "m"; }}}},
      {"model_commit", {{"model_commit = \"abc\"", "Hub commit", nullptr}}},
      {"evaluate_model", {{"evaluate_model = \"x\"", "schism evaluate", nullptr}}},
      {"collect_reproducibles", {{"collect_reproducibles = \"d\"", "Hub", nullptr}}},
      {"reproduce", {{"reproduce = \"r.json\"", "schism export", nullptr}}},
      {"dtypes",
       {{"dtypes = [\"auto\", \"float16\"]", "",
         [](const S& s) { return s.dtypes_size() == 2 && s.dtypes(1) == "float16"; }},
        {"dtypes = [\"float64\"]", "float64", nullptr}}},
      {"quantization",
       {{"quantization = \"bnb_4bit\"", "",
         [](const S& s) { return s.quantization() == "bnb_4bit"; }}}},
      {"device_map",
       {{"device_map = \"auto\"", "", [](const S&) { return true; }},
        {"device_map = \"cpu\"", "--device", nullptr}}},
      {"max_memory", {{"max_memory = { \"0\" = \"20GB\" }", "offload", nullptr}}},
      {"offload_outputs_to_cpu",
       {{"offload_outputs_to_cpu = true", "", [](const S&) { return true; }},
        {"offload_outputs_to_cpu = false", "cannot be honoured", nullptr}}},
      {"batch_size",
       {{"batch_size = 8", "", [](const S& s) { return s.batch_size() == 8; }},
        {"batch_size = 0", "", [](const S& s) { return s.batch_size() == 0; }}}},
      {"max_batch_size",
       {{"batch_size = 0\nmax_batch_size = 16", "",
         [](const S& s) { return s.batch_size() == 16; }}}},
      {"max_response_length",
       {{"max_response_length = 7", "", [](const S& s) { return s.max_response_length() == 7; }}}},
      {"response_prefix",
       {{"response_prefix = \"Sure\"", "",
         [](const S& s) { return s.response_prefix() == "Sure"; }}}},
      {"chain_of_thought_skips",
       {{"chain_of_thought_skips = [[\"<a>\", \"<a></a>\"]]", "built-in pairs", nullptr}}},
      {"print_responses",
       {{"print_responses = false", "", [](const S&) { return true; }},
        {"print_responses = true", "do not print", nullptr}}},
      {"print_residual_geometry",
       {{"print_residual_geometry = false", "", [](const S&) { return true; }},
        {"print_residual_geometry = true", "residual geometry", nullptr}}},
      {"plot_residuals",
       {{"plot_residuals = false", "", [](const S&) { return true; }},
        {"plot_residuals = true", "no residual plots", nullptr}}},
      {"residual_plot_path", {{"residual_plot_path = 3", "expected a string", nullptr}}},
      {"residual_plot_title", {{"residual_plot_title = 3", "expected a string", nullptr}}},
      {"residual_plot_style", {{"residual_plot_style = 3", "expected a string", nullptr}}},
      {"kl_divergence_scale",
       {{"kl_divergence_scale = 2.5", "",
         [](const S& s) { return s.kl_divergence_scale() == 2.5; }},
        {"kl_divergence_scale = 0", "positive", nullptr}}},
      {"kl_divergence_target",
       {{"kl_divergence_target = 0.05", "",
         [](const S& s) { return s.kl_divergence_target() == 0.05; }}}},
      {"orthogonalize_direction",
       {{"orthogonalize_direction = false", "",
         [](const S& s) { return !s.orthogonalize_direction(); }}}},
      {"row_normalization",
       {{"row_normalization = \"pre\"", "",
         [](const S& s) { return s.row_normalization() == "pre"; }}}},
      {"full_normalization_lora_rank",
       {{"full_normalization_lora_rank = 3", "", [](const S&) { return true; }},
        {"full_normalization_lora_rank = 8", "exact", nullptr}}},
      {"winsorization_quantile",
       {{"winsorization_quantile = 0.95", "",
         [](const S& s) { return s.winsorization_quantile() == 0.95; }},
        {"winsorization_quantile = 1.5", "[0, 1]", nullptr}}},
      {"n_trials", {{"n_trials = 12", "", [](const S& s) { return s.n_trials() == 12; }}}},
      {"n_startup_trials",
       {{"n_startup_trials = 5", "", [](const S& s) { return s.n_startup_trials() == 5; }}}},
      {"seed", {{"seed = 42", "", [](const S& s) { return s.seed() == 42; }}}},
      {"study_checkpoint_dir",
       {{"study_checkpoint_dir = \"ck\"", "",
         [](const S& s) { return s.study_checkpoint_dir() == "ck"; }}}},
      {"benchmarks", {{"benchmarks = []", "benchmark", nullptr}}},
      {"export_strategy",
       {{"export_strategy = \"adapter\"", "",
         [](const S& s) { return s.export_format() == "adapter"; }},
        {"export_strategy = \"merge\"", "",
         [](const S& s) { return s.export_format() == "merged"; }}}},
      {"max_shard_size",
       {{"max_shard_size = \"1GB\"", "",
         [](const S& s) { return s.max_shard_bytes() == 1000000000ull; }}}},
      {"refusal_markers",
       {{"refusal_markers = [\"nope\"]", "",
         [](const S& s) { return s.refusal_markers_size() == 1; }},
        {"refusal_markers = [\"\"]", "non-empty", nullptr}}},
      {"system_prompt",
       {{"system_prompt = \"Be terse.\"", "",
         [](const S& s) { return s.system_prompt() == "Be terse."; }}}},
      {"good_prompts",
       {{"[good_prompts]\ndataset = \"g.txt\"\nsplit = \"train[:4]\"\ncolumn = "
         "\"text\"\nresidual_plot_label = \"x\"\nresidual_plot_color = \"red\"",
         "",
         [](const S& s) {
           return s.good_prompts().path() == "g.txt" && s.good_prompts().split() == "train[:4]";
         }},
        {"[good_prompts]\ncolumn = \"prompt\"", "",
         [](const S& s) { return s.good_prompts().column() == "prompt"; }},
        {"[good_prompts]\ncolumn = \"\"", "must name a column", nullptr},
        {"[good_prompts]\ncommit = \"abc\"", "good_prompts.commit", nullptr}}},
      {"bad_prompts",
       {{"[bad_prompts]\ndataset = \"b.txt\"\nprefix = \"Q:\"\nsuffix = \"!\"\nsystem_prompt = "
         "\"S\"",
         "",
         [](const S& s) {
           return s.bad_prompts().path() == "b.txt" && s.bad_prompts().prefix() == "Q:" &&
                  s.bad_prompts().suffix() == "!" && s.bad_prompts().system_prompt() == "S";
         }}}},
      {"good_evaluation_prompts",
       {{"[good_evaluation_prompts]\ndataset = \"k.txt\"", "",
         [](const S& s) { return s.kl_prompts().path() == "k.txt"; }},
        {"[good_evaluation_prompts]\ndataset = \"k.txt\"\n[scorer.KLDivergence.prompts]\ndataset = "
         "\"k.txt\"",
         "already set", nullptr}}},
      {"bad_evaluation_prompts",
       {{"[bad_evaluation_prompts]\ndataset = \"r.txt\"", "",
         [](const S& s) { return s.refusal_prompts().path() == "r.txt"; }}}},
  };
  return *cases;
}

TEST(StudyConfig, EveryHereticKeyIsHonouredOrRefusedByName) {
  const std::vector<std::string> known = StudyConfigKeys();
  for (const auto& [key, cases] : HereticKeyCases()) {
    EXPECT_NE(std::find(known.begin(), known.end(), key), known.end())
        << key << " is not in the key table";
    for (const KeyCase& c : cases) {
      auto spec = StudySpecFromToml(c.toml, "heretic.toml");
      if (c.error.empty()) {
        ASSERT_TRUE(spec.ok()) << c.toml << ": " << spec.status();
        EXPECT_TRUE(c.check(*spec)) << c.toml;
      } else {
        ASSERT_FALSE(spec.ok()) << c.toml << " was accepted";
        const std::string message(spec.status().message());
        EXPECT_NE(message.find(c.error), std::string::npos) << c.toml << ": " << message;
        EXPECT_NE(message.find(key), std::string::npos)
            << c.toml << ": the error must name the key: " << message;
      }
    }
  }
  EXPECT_EQ(HereticKeyCases().size(), 40u) << "Heretic 1.4.0's Settings has 40 fields";
  // Master's plugin spelling of the markers.
  auto markers =
      StudySpecFromToml("[scorer.KeywordRate]\nkeyword_markers = [\"a\", \"b\"]", "m.toml");
  ASSERT_TRUE(markers.ok()) << markers.status();
  EXPECT_EQ(markers->refusal_markers_size(), 2);
  EXPECT_FALSE(
      StudySpecFromToml(
          "refusal_markers = [\"a\"]\n[scorer.KeywordRate]\nkeyword_markers = [\"b\"]", "m.toml")
          .ok());
}

TEST(StudyConfig, JudgeAndPerplexityScorerTablesAreReadOrRefusedByKey) {
  auto spec = StudySpecFromToml(
      "[scorer.Judge]\nurl = \"http://127.0.0.1:8080/v1\"\nmodel = \"judge\"\n"
      "api_key_env = \"JUDGE_KEY\"\ntimeout_seconds = 30\ninstruction = \"Be strict.\"\n"
      "[scorer.Perplexity]\nmax_tokens = 64\n[scorer.Perplexity.texts]\ndataset = \"t.txt\"\n"
      "split = \"[:50]\"\n",
      "s.toml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->judge().url(), "http://127.0.0.1:8080/v1");
  EXPECT_EQ(spec->judge().model(), "judge");
  EXPECT_EQ(spec->judge().api_key_env(), "JUDGE_KEY");
  EXPECT_EQ(spec->judge().timeout_seconds(), 30);
  EXPECT_EQ(spec->judge().instruction(), "Be strict.");
  EXPECT_EQ(spec->perplexity().texts().path(), "t.txt");
  EXPECT_EQ(spec->perplexity().texts().split(), "[:50]");
  EXPECT_EQ(spec->perplexity().max_tokens(), 64);
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"[scorer.Judge]\nmodel = \"m\"\n", "scorer.Judge.url: is required"},
      {"[scorer.Judge]\nurl = \"http://h\"\napi_key = \"sk-1\"\n",
       "scorer.Judge.api_key: keys do not go into study specs"},
      {"[scorer.Judge]\nurl = \"http://h\"\ntemperature = 0.5\n",
       "scorer.Judge.temperature: unknown key"},
      {"[scorer.Judge]\nurl = \"http://h\"\ntimeout_seconds = 0\n",
       "scorer.Judge.timeout_seconds: must be in [1, 3600]"},
      {"[scorer.Perplexity]\nmax_tokens = 64\n", "scorer.Perplexity.texts: is required"},
      {"[scorer.Perplexity]\nmax_tokens = 1\n[scorer.Perplexity.texts]\ndataset = \"t\"\n",
       "scorer.Perplexity.max_tokens: must be in [2, 8192]"},
      {"[scorer.Perplexity]\nstride = 4\n", "scorer.Perplexity.stride: unknown key"},
      {"[scorer.Classifier]\nmodel = \"x\"\n", "scorer.Classifier: unknown scorer"}};
  for (const auto& [toml, error] : refused) {
    auto bad = StudySpecFromToml(toml, "s.toml");
    ASSERT_FALSE(bad.ok()) << toml;
    EXPECT_NE(bad.status().message().find(error), std::string::npos) << bad.status();
  }
}

TEST(StudySpec, JudgeAndPerplexityTakeTheirDefaultsAndRefuseBadValues) {
  v1::StudySpec spec;
  spec.set_model("m.gguf");
  spec.mutable_judge()->set_url("https://judge.internal:8443/v1");
  spec.mutable_perplexity()->mutable_texts()->set_path("t.txt");
  auto normalized = NormalizeStudySpec(spec);
  ASSERT_TRUE(normalized.ok()) << normalized.status();
  EXPECT_EQ(normalized->judge().timeout_seconds(), 60);
  EXPECT_EQ(normalized->perplexity().max_tokens(), 128);
  for (const char* url : {"judge:8080", "http://", "http:///v1", "file:///tmp/x"}) {
    v1::StudySpec bad = spec;
    bad.mutable_judge()->set_url(url);
    auto refused = NormalizeStudySpec(bad);
    ASSERT_FALSE(refused.ok()) << url;
    EXPECT_NE(refused.status().message().find("judge.url"), std::string::npos) << refused.status();
  }
  v1::StudySpec chat = spec;
  chat.mutable_perplexity()->mutable_texts()->set_system_prompt("You are...");
  auto refused = NormalizeStudySpec(chat);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("perplexity.texts.system_prompt"), std::string::npos);
}

TEST(StudyConfig, TheObjectiveFollowsHereticOneFourWhenItsKeysAreSet) {
  v1::StudySpec spec;
  spec.set_model("m");
  EXPECT_EQ(NormalizeStudySpec(spec)->objective(), "raw") << "master's raw objectives by default";
  spec.set_kl_divergence_target(0.02);
  auto heretic = NormalizeStudySpec(spec);
  ASSERT_TRUE(heretic.ok());
  EXPECT_EQ(heretic->objective(), "heretic-1.4");
  EXPECT_EQ(heretic->kl_divergence_scale(), 1.0);
  spec.set_objective("raw");
  EXPECT_NE(NormalizeStudySpec(spec).status().message().find("kl_divergence_scale"),
            std::string::npos);
  spec.clear_objective();
  spec.set_study_checkpoint_dir("ck");
  EXPECT_NE(NormalizeStudySpec(spec).status().message().find("schism run"), std::string::npos);

  // Heretic 1.4's evaluator.get_score: (KL score, refusal score).
  v1::TrialScores scores;
  scores.set_refusals(6);
  scores.set_refusal_prompts(100);
  scores.set_kl_divergence(0.3);
  v1::StudySpec h = *heretic;
  h.set_kl_divergence_scale(2.0);
  EXPECT_EQ(TrialObjectives(h, 40, scores), (std::vector<double>{0.3 / 2.0, 6.0 / 40}));
  scores.set_kl_divergence(0.001);  // below the 0.02 target: the refusal ratio stands in for KL
  EXPECT_EQ(TrialObjectives(h, 40, scores), (std::vector<double>{6.0 / 40 * 0.02 / 2.0, 6.0 / 40}));
  EXPECT_EQ(TrialObjectives(h, 0, scores), (std::vector<double>{6.0 * 0.02 / 2.0, 6.0}))
      << "no baseline refusals";
  v1::StudySpec raw;
  raw.set_model("m");
  EXPECT_EQ(TrialObjectives(*NormalizeStudySpec(raw), 40, scores),
            (std::vector<double>{6.0, 0.001}));
}

}  // namespace
}  // namespace schism::coordinator

namespace schism::coordinator {
namespace {

// Heretic's own defaults, every setting written out as its repository's config.default.toml has
// them (tests/oracles/heretic_default_config.py, from heretic.config.Settings of the installed
// heretic-llm 1.4.0), with the prompt sets pointed at the shared datasets: accepted as they are,
// and read with Heretic's values. Skipped where heretic is not installed.
TEST(StudyConfig, HereticsOwnDefaultConfigIsAcceptedWithHereticsValues) {
  std::string dir, log;
  const int rc = testing_support::RunOracleOnce(
      "heretic_default_config.py",
      {testing_support::RealModelPath(), common::DefaultDataDir(), "{OUT}"}, &dir, &log);
  if (rc == 77) GTEST_SKIP() << log;
  ASSERT_EQ(rc, 0) << log;
  const std::string toml = testing_support::ReadFile(dir + "/config.default.toml");
  ASSERT_NE(toml.find("[[benchmarks]]"), std::string::npos) << "the oracle wrote every setting";
  ASSERT_NE(toml.find("chain_of_thought_skips"), std::string::npos);
  auto spec = StudySpecFromToml(toml, "config.default.toml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  const auto defaults = nlohmann::json::parse(testing_support::ReadFile(dir + "/defaults.json"));
  EXPECT_EQ(spec->model(), testing_support::RealModelPath());
  EXPECT_EQ(spec->n_trials(), defaults["n_trials"].get<int>());
  EXPECT_EQ(spec->n_startup_trials(), defaults["n_startup_trials"].get<int>());
  EXPECT_EQ(spec->max_response_length(), defaults["max_response_length"].get<int>());
  EXPECT_EQ(spec->system_prompt(), defaults["system_prompt"].get<std::string>());
  EXPECT_EQ(spec->row_normalization(), defaults["row_normalization"].get<std::string>());
  EXPECT_EQ(spec->orthogonalize_direction(), defaults["orthogonalize_direction"].get<bool>());
  EXPECT_EQ(spec->kl_divergence_scale(), defaults["kl_divergence_scale"].get<double>());
  EXPECT_EQ(spec->kl_divergence_target(), defaults["kl_divergence_target"].get<double>());
  EXPECT_EQ(spec->winsorization_quantile(), defaults["winsorization_quantile"].get<double>());
  EXPECT_EQ(
      std::vector<std::string>(spec->refusal_markers().begin(), spec->refusal_markers().end()),
      defaults["refusal_markers"].get<std::vector<std::string>>());
  EXPECT_EQ(spec->good_prompts().path(), defaults["good_prompts"]["dataset"].get<std::string>());
  EXPECT_EQ(spec->good_prompts().split(), "[:400]");
  EXPECT_EQ(spec->refusal_prompts().path(),
            defaults["bad_evaluation_prompts"]["dataset"].get<std::string>());
  EXPECT_EQ(spec->refusal_prompts().split(), "[:100]");
  // The two list defaults are accepted only as they are: one entry less is refused by name.
  std::string fewer_benchmarks = toml;
  fewer_benchmarks.erase(fewer_benchmarks.rfind("[[benchmarks]]"));
  auto refused = StudySpecFromToml(fewer_benchmarks, "config.toml");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(std::string(refused.status().message()).find("benchmarks"), std::string::npos)
      << refused.status();
  std::string other_skips = toml;
  other_skips.replace(other_skips.find("\"<thought></thought>\""), 21, "\"<thought/>\"");
  refused = StudySpecFromToml(other_skips, "config.toml");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(std::string(refused.status().message()).find("chain_of_thought_skips"),
            std::string::npos)
      << refused.status();
}

}  // namespace
}  // namespace schism::coordinator
