#include "common/heretic_reproduce.h"
#include "common/refusal_markers.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "tests/test_support.h"

namespace schism::common {
namespace {

using nlohmann::json;
using testing_support::ReadFile;
using testing_support::RunOracleOnce;

constexpr int kOracleSkipped = 77;  // tests/oracles/heretic_reproduce.py: heretic not importable
constexpr int kOracleLayers = 28;   // the layers its .weights.json files cover

double Number(const ParameterValues& values, const std::string& key) {
  auto it = values.find(key);
  if (it == values.end() || !std::holds_alternative<double>(it->second)) {
    ADD_FAILURE() << key << " is not a number";
    return 0;
  }
  return std::get<double>(it->second);
}

std::string Text(const ParameterValues& values, const std::string& key) {
  auto it = values.find(key);
  if (it == values.end() || !std::holds_alternative<std::string>(it->second)) {
    ADD_FAILURE() << key << " is not a string";
    return "";
  }
  return std::get<std::string>(it->second);
}

void ExpectDataset(const std::optional<HereticDatasetSpec>& spec, const std::string& dataset,
                   const std::string& split, const std::string& prefix = "",
                   const std::string& suffix = "",
                   const std::optional<std::string>& system_prompt = std::nullopt) {
  ASSERT_TRUE(spec.has_value()) << dataset;
  EXPECT_EQ(spec->dataset, dataset);
  EXPECT_EQ(spec->split, split);
  EXPECT_EQ(spec->column, "text");
  EXPECT_EQ(spec->prefix, prefix);
  EXPECT_EQ(spec->suffix, suffix);
  EXPECT_EQ(spec->system_prompt, system_prompt);
  // The oracle's stand-ins for the Hub commits create_reproduce_folder looks up: sha1(dataset).
  ASSERT_TRUE(spec->commit.has_value());
  EXPECT_EQ(spec->commit->size(), 40u);
}

// Heretic 1.4.0's default markers, which are schism's defaults too: the oracle files (written
// by Heretic's own code) must carry exactly these.
const std::vector<std::string>& kHereticDefaultMarkers14 = DefaultRefusalMarkers();

// Files written by Heretic 1.4.0's own generate_reproduce_json (tests/oracles/
// heretic_reproduce.py); skipped where the heretic package is not installed.
class HereticReproduceOracle : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string;
    log_ = new std::string;
    rc_ = RunOracleOnce("heretic_reproduce.py", {"{OUT}"}, dir_, log_);
  }
  void SetUp() override {
    if (rc_ == kOracleSkipped) GTEST_SKIP() << *log_;
    ASSERT_EQ(rc_, 0) << *log_;
  }
  static HereticReproduction Read(const std::string& name) {
    auto r = ReadHereticReproduction(*dir_ + "/" + name + ".json");
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : HereticReproduction{};
  }
  static std::string* dir_;
  static std::string* log_;
  static int rc_;
};
std::string* HereticReproduceOracle::dir_ = nullptr;
std::string* HereticReproduceOracle::log_ = nullptr;
int HereticReproduceOracle::rc_ = -1;

TEST_F(HereticReproduceOracle, ReadsVersion2WithAGlobalDirectionAndEveryField) {
  const HereticReproduction r = Read("v2_global");
  EXPECT_EQ(r.version, 2);
  EXPECT_TRUE(r.hashes_checked_by_heretic);
  EXPECT_EQ(r.timestamp, "2026-06-12T08:30:00");
  EXPECT_EQ(r.heretic_version, "1.4.0");
  ASSERT_TRUE(r.pytorch_version.has_value());
  EXPECT_FALSE(r.pytorch_version->empty());

  const HereticSettings& s = r.settings;
  EXPECT_EQ(s.model, "Qwen/Qwen3-4B-Instruct-2507");
  ASSERT_TRUE(s.model_commit.has_value());
  EXPECT_EQ(s.model_commit->size(), 40u);
  EXPECT_EQ(s.dtypes, (std::vector<std::string>{"bfloat16", "float32"}));
  EXPECT_EQ(s.quantization, "bnb_4bit");
  EXPECT_EQ(s.batch_size, 64);
  EXPECT_EQ(s.max_response_length, 120);
  EXPECT_EQ(s.response_prefix, "<think>\n\n</think>\n\n");
  EXPECT_EQ(s.kl_divergence_scale, 1.5);
  EXPECT_EQ(s.kl_divergence_target, 0.02);
  EXPECT_EQ(s.orthogonalize_direction, false);
  EXPECT_EQ(s.row_normalization, "pre");
  EXPECT_EQ(s.winsorization_quantile, 0.95);
  EXPECT_EQ(s.export_strategy, "merge");
  EXPECT_EQ(s.max_shard_bytes, 2000000000u);
  EXPECT_EQ(s.refusal_markers, (std::vector<std::string>{"sorry", "i cannot", "as an ai"}));
  EXPECT_EQ(s.system_prompt, "You are a terse assistant.");
  ExpectDataset(s.good_prompts, "mlabonne/harmless_alpaca", "train[:300]",
                "Q: ", " A:", "Answer plainly.");
  ExpectDataset(s.bad_prompts, "mlabonne/harmful_behaviors", "train[:400]");
  ExpectDataset(s.good_evaluation_prompts, "mlabonne/harmless_alpaca", "test[:100]");
  ExpectDataset(s.bad_evaluation_prompts, "mlabonne/harmful_behaviors", "test[:100]");
  EXPECT_EQ(s.good_prompts->commit, s.good_evaluation_prompts->commit);
  EXPECT_NE(s.good_prompts->commit, s.bad_prompts->commit);
  // Written by Heretic, not applicable to the reproduced model; rank 3 is unused with "pre".
  EXPECT_EQ(s.not_applied,
            (std::vector<std::string>{"settings.device_map", "settings.max_memory",
                                      "settings.offload_outputs_to_cpu", "settings.n_trials",
                                      "settings.n_startup_trials", "settings.seed",
                                      "settings.full_normalization_lora_rank"}));

  EXPECT_EQ(Text(r.params, "direction_scope"), "global");
  EXPECT_EQ(Number(r.params, "direction_index"), 14.37);
  EXPECT_EQ(Number(r.params, "attn.o_proj.max_weight"), 1.2);
  EXPECT_EQ(Number(r.params, "attn.o_proj.max_weight_position"), 20.5);
  EXPECT_DOUBLE_EQ(Number(r.params, "attn.o_proj.min_weight"), 0.35);
  EXPECT_EQ(Number(r.params, "attn.o_proj.min_weight") * 1.2, 0.35 * 1.2);  // Heretic's value
  EXPECT_EQ(Number(r.params, "attn.o_proj.min_weight_distance"), 9.2);
  EXPECT_EQ(Number(r.params, "mlp.down_proj.max_weight"), 0.93);
  EXPECT_EQ(Number(r.params, "mlp.down_proj.max_weight_position"), 17.0);
  EXPECT_DOUBLE_EQ(Number(r.params, "mlp.down_proj.min_weight"), 0.8);
  EXPECT_EQ(Number(r.params, "mlp.down_proj.min_weight") * 0.93, 0.8 * 0.93);
  EXPECT_EQ(Number(r.params, "mlp.down_proj.min_weight_distance"), 6.4);
  EXPECT_EQ(r.params.size(), 10u);
  EXPECT_TRUE(r.absent_components.empty());

  ASSERT_TRUE(r.metrics.has_value());
  EXPECT_EQ(r.metrics->kl_divergence, 0.1234);
  EXPECT_EQ(r.metrics->refusals, 7);
  EXPECT_EQ(r.metrics->base_refusals, 93);
  EXPECT_EQ(r.metrics->n_bad_prompts, 100);
  // Lower-cased, as Heretic compares them.
  EXPECT_EQ(r.hashes, (std::map<std::string, std::string>{
                          {"model-00001-of-00002.safetensors",
                           "5d41402abc4b2a76b9719d911017c5925d41402abc4b2a76b9719d911017c592"},
                          {"model-00002-of-00002.safetensors",
                           "7d793037a0760186574b0282f2f435e77d793037a0760186574b0282f2f435e7"}}));
}

TEST_F(HereticReproduceOracle, ReadsVersion2WithPerLayerDirectionsAndDefaults) {
  const HereticReproduction r = Read("v2_per_layer");
  EXPECT_EQ(r.version, 2);
  const HereticSettings& s = r.settings;
  EXPECT_EQ(s.model, "google/gemma-3-270m-it");
  EXPECT_EQ(s.dtypes, (std::vector<std::string>{"auto", "float16", "bfloat16", "float32"}));
  EXPECT_EQ(s.quantization, "none");
  EXPECT_EQ(s.batch_size, 128);
  EXPECT_EQ(s.max_response_length, 100);
  EXPECT_EQ(s.response_prefix, "");  // detected as none: set, not unset
  EXPECT_EQ(s.kl_divergence_scale, 1.0);
  EXPECT_EQ(s.kl_divergence_target, 0.01);
  EXPECT_EQ(s.orthogonalize_direction, true);
  EXPECT_EQ(s.row_normalization, "full");
  EXPECT_EQ(s.winsorization_quantile, 1.0);
  EXPECT_EQ(s.export_strategy, std::nullopt);  // written as null
  EXPECT_EQ(s.max_shard_bytes, 5000000000u);
  EXPECT_EQ(s.refusal_markers, kHereticDefaultMarkers14);
  EXPECT_EQ(s.system_prompt, "You are a helpful assistant.");
  ExpectDataset(s.good_prompts, "mlabonne/harmless_alpaca", "train[:400]");
  ExpectDataset(s.bad_prompts, "mlabonne/harmful_behaviors", "train[:400]");
  ExpectDataset(s.good_evaluation_prompts, "mlabonne/harmless_alpaca", "test[:100]");
  ExpectDataset(s.bad_evaluation_prompts, "mlabonne/harmful_behaviors", "test[:100]");
  // Rank 3 with "full" is accepted (applied as schism's exact normalization), so not listed.
  EXPECT_EQ(s.not_applied,
            (std::vector<std::string>{"settings.device_map", "settings.max_memory",
                                      "settings.offload_outputs_to_cpu", "settings.n_trials",
                                      "settings.n_startup_trials", "settings.seed"}));

  EXPECT_EQ(Text(r.params, "direction_scope"), "per layer");
  EXPECT_EQ(Number(r.params, "direction_index"), 0.0);
  EXPECT_EQ(Number(r.params, "attn.o_proj.max_weight"), 1.4379);
  EXPECT_EQ(Number(r.params, "attn.o_proj.min_weight") * 1.4379, 0.0918 * 1.4379);
  EXPECT_EQ(Number(r.params, "mlp.down_proj.max_weight_position"), 22.6);
  EXPECT_EQ(Number(r.params, "mlp.down_proj.min_weight_distance"), 3.3);
  ASSERT_TRUE(r.metrics.has_value());
  EXPECT_EQ(r.metrics->kl_divergence, 0.0456);
  EXPECT_EQ(r.metrics->refusals, 3);
  EXPECT_EQ(r.metrics->base_refusals, 97);
  std::string ab;
  for (int i = 0; i < 32; ++i) ab += "ab";
  EXPECT_EQ(r.hashes, (std::map<std::string, std::string>{{"model.safetensors", ab}}));
}

TEST_F(HereticReproduceOracle, ReadsVersion1AsHeretic130WroteIt) {
  const HereticReproduction r = Read("v1");
  EXPECT_EQ(r.version, 1);
  EXPECT_FALSE(r.hashes_checked_by_heretic);
  EXPECT_EQ(r.heretic_version, "1.3.0");
  const HereticSettings& s = r.settings;
  EXPECT_EQ(s.model, "meta-llama/Llama-3.2-3B-Instruct");
  EXPECT_EQ(s.batch_size, 32);
  EXPECT_EQ(s.export_strategy, std::nullopt);  // 1.3.0 had no such setting
  std::vector<std::string> markers_13(kHereticDefaultMarkers14.begin() + 1,
                                      kHereticDefaultMarkers14.end());
  EXPECT_EQ(s.refusal_markers, markers_13);
  EXPECT_EQ(s.row_normalization, "full");
  EXPECT_EQ(Text(r.params, "direction_scope"), "global");
  EXPECT_EQ(Number(r.params, "direction_index"), 19.81);
  EXPECT_EQ(Number(r.params, "attn.o_proj.min_weight"), 0.5);
  EXPECT_EQ(Number(r.params, "mlp.down_proj.min_weight"), 0.25);
  ASSERT_TRUE(r.metrics.has_value());
  EXPECT_EQ(r.metrics->refusals, 12);
  EXPECT_EQ(r.metrics->n_bad_prompts, 100);
  EXPECT_EQ(r.hashes.size(), 1u);
}

// The parameters restore Heretic's weights: schism's LayerWeights of the read parameters equal,
// bit for bit, the weights Heretic's own Model.abliterate applies per layer for the same file.
TEST_F(HereticReproduceOracle, ParametersGiveHereticsPerLayerWeights) {
  for (const std::string name : {"v2_global", "v2_per_layer", "v1"}) {
    SCOPED_TRACE(name);
    const HereticReproduction r = Read(name);
    auto params = TrialParametersFromValues(r.params);
    ASSERT_TRUE(params.ok()) << params.status();
    EXPECT_EQ(params->global_direction, name != "v2_per_layer");
    const json expected = json::parse(ReadFile(*dir_ + "/" + name + ".weights.json"));
    ASSERT_EQ(expected.size(), 2u);
    for (const std::string component : {kAttentionComponent, kMlpComponent}) {
      const std::vector<double> weights =
          LayerWeights(params->components.at(component), kOracleLayers);
      const std::vector<double> heretic = expected.at(component).get<std::vector<double>>();
      ASSERT_EQ(weights.size(), heretic.size());
      int touched = 0;
      for (int layer = 0; layer < kOracleLayers; ++layer) {
        EXPECT_EQ(weights[layer], heretic[layer]) << component << " layer " << layer;
        touched += heretic[layer] != 0;
      }
      EXPECT_GT(touched, 3) << component;
    }
  }
}

// A minimal file in Heretic's layout, hand-built after heretic/utils.py generate_reproduce_json
// (the oracle files above come from Heretic itself; these run everywhere).
json ValidFile() {
  return json::parse(R"({
    "version": "2",
    "timestamp": "2026-06-12T08:30:00",
    "environment": {"heretic": {"version": "1.4.0", "is_standard_pypi": true,
                                "metadata": {"type": "pypi"}},
                    "pytorch_version": "2.15.0", "requirements": {"torch": "2.15.0"}},
    "settings": {"model": "org/model", "model_commit": null, "row_normalization": "none",
                 "good_prompts": {"dataset": "data/harmless.txt", "commit": null,
                                  "split": null, "column": null, "prefix": "", "suffix": "",
                                  "system_prompt": null}},
    "parameters": {
      "direction_index": 10.5,
      "abliteration_parameters": {
        "attn.o_proj": {"max_weight": 1.0, "max_weight_position": 12.0, "min_weight": 0.5,
                        "min_weight_distance": 4.0},
        "mlp.down_proj": {"max_weight": 1.25, "max_weight_position": 14.0, "min_weight": 0.25,
                          "min_weight_distance": 2.0}}},
    "metrics": {"kl_divergence": 0.2, "refusals": 5, "base_refusals": 90, "n_bad_prompts": 100},
    "hashes": {"model.safetensors":
               "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
  })");
}

absl::StatusOr<HereticReproduction> Parse(const json& file) {
  return ParseHereticReproduction(file.dump(), "reproduce.json");
}

// The error's message, or "" when it parsed.
std::string Error(const json& file) {
  auto r = Parse(file);
  return r.ok() ? "" : std::string(r.status().message());
}

TEST(HereticReproduce, ReadsAHandBuiltFileAndFillsOnlyWhatItSets) {
  auto r = Parse(ValidFile());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->version, 2);
  EXPECT_EQ(r->settings.model, "org/model");
  EXPECT_EQ(r->settings.model_commit, std::nullopt);
  EXPECT_EQ(r->settings.row_normalization, "none");
  EXPECT_EQ(r->settings.dtypes, std::nullopt);  // absent: Heretic's default
  EXPECT_EQ(r->settings.response_prefix, std::nullopt);
  ASSERT_TRUE(r->settings.good_prompts.has_value());
  EXPECT_EQ(r->settings.good_prompts->dataset, "data/harmless.txt");
  EXPECT_EQ(r->settings.good_prompts->split, std::nullopt);
  EXPECT_EQ(r->settings.bad_prompts, std::nullopt);
  EXPECT_TRUE(r->settings.not_applied.empty());

  // The example: layer weights from schism's kernel for Heretic's absolute min_weight.
  auto params = TrialParametersFromValues(r->params);
  ASSERT_TRUE(params.ok()) << params.status();
  EXPECT_TRUE(params->global_direction);
  EXPECT_EQ(params->direction_index, 10.5);
  EXPECT_EQ(LayerWeights(params->components.at(kAttentionComponent), 18),
            (std::vector<double>{0, 0, 0, 0, 0, 0, 0, 0, 0.5, 0.625, 0.75, 0.875, 1.0, 0.875, 0.75,
                                 0.625, 0.5, 0}));
  EXPECT_EQ(
      LayerWeights(params->components.at(kMlpComponent), 18),
      (std::vector<double>{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.25, 0.75, 1.25, 0.75, 0.25, 0}));
}

TEST(HereticReproduce, NamesTheFileAndTheJsonPathOfAWrongType) {
  json file = ValidFile();
  file["parameters"]["abliteration_parameters"]["attn.o_proj"]["max_weight"] = "1.0";
  EXPECT_EQ(Error(file),
            "reproduce.json: parameters.abliteration_parameters.attn.o_proj.max_weight must be a "
            "number");
  file = ValidFile();
  file["parameters"]["direction_index"] = "10";
  EXPECT_EQ(Error(file), "reproduce.json: parameters.direction_index must be a number or null");
  file = ValidFile();
  file["metrics"]["refusals"] = 2.5;
  EXPECT_EQ(Error(file), "reproduce.json: metrics.refusals must be an integer");
  file = ValidFile();
  file["settings"]["good_prompts"]["prefix"] = nullptr;
  EXPECT_EQ(Error(file), "reproduce.json: settings.good_prompts.prefix must be a string");
  file = ValidFile();
  file["settings"]["refusal_markers"] = json::array({"sorry", 3});
  EXPECT_EQ(Error(file), "reproduce.json: settings.refusal_markers[1] must be a string");
  file = ValidFile();
  file["settings"]["orthogonalize_direction"] = "yes";
  EXPECT_EQ(Error(file), "reproduce.json: settings.orthogonalize_direction must be true or false");
  file = ValidFile();
  file["settings"]["row_normalization"] = "post";
  EXPECT_EQ(Error(file),
            "reproduce.json: settings.row_normalization \"post\" is not one of \"none\", \"pre\", "
            "\"full\"");
  file = ValidFile();
  file["settings"]["winsorization_quantile"] = 1.5;
  EXPECT_EQ(Error(file),
            "reproduce.json: settings.winsorization_quantile must be in [0, 1] (1 = off)");
}

TEST(HereticReproduce, RefusesWhatIsNotAReproduceFile) {
  EXPECT_EQ(std::string(ParseHereticReproduction("{\"version\": ", "r.json").status().message()),
            "r.json: not valid JSON");
  EXPECT_EQ(std::string(ParseHereticReproduction("[1, 2]", "r.json").status().message()),
            "r.json: not a JSON object");
  auto missing = ReadHereticReproduction("/nonexistent/reproduce.json");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("/nonexistent/reproduce.json"), std::string::npos);

  json file = ValidFile();
  file["version"] = "3";
  EXPECT_EQ(Error(file),
            "reproduce.json: version \"3\" is not supported (schism reads Heretic's reproduce.json "
            "versions \"1\" and \"2\")");
  file["version"] = 2;
  EXPECT_EQ(Error(file), "reproduce.json: version must be a string (\"1\" or \"2\"), not 2");
  file.erase("version");
  EXPECT_EQ(Error(file), "reproduce.json: version is missing");
  file["schism_version"] = "0.1.0";  // the record schism export writes, same file name
  EXPECT_NE(Error(file).find("written by schism export"), std::string::npos) << Error(file);

  file = ValidFile();
  file.erase("parameters");
  EXPECT_EQ(Error(file), "reproduce.json: parameters is missing");
  file = ValidFile();
  file["parameters"].erase("direction_index");
  EXPECT_EQ(Error(file), "reproduce.json: parameters.direction_index is missing");
  file = ValidFile();
  file["parameters"]["abliteration_parameters"] = json::object();
  EXPECT_EQ(Error(file), "reproduce.json: parameters.abliteration_parameters names no component");
  file = ValidFile();
  file["parameters"]["abliteration_parameters"]["mlp.down_proj"].erase("min_weight_distance");
  EXPECT_EQ(Error(file),
            "reproduce.json: parameters.abliteration_parameters.mlp.down_proj.min_weight_distance "
            "is missing");
  file = ValidFile();
  file["settings"].erase("model");
  EXPECT_EQ(Error(file), "reproduce.json: settings.model is missing");
  file = ValidFile();
  file["metrics"].erase("n_bad_prompts");
  EXPECT_EQ(Error(file), "reproduce.json: metrics.n_bad_prompts is missing");
}

TEST(HereticReproduce, RefusesUnknownKeysAndComponentsByName) {
  json file = ValidFile();
  file["parameters"]["abliteration_parameters"]["attn.q_proj"] =
      file["parameters"]["abliteration_parameters"]["attn.o_proj"];
  EXPECT_EQ(Error(file),
            "reproduce.json: parameters.abliteration_parameters names component \"attn.q_proj\", "
            "which schism does not abliterate (it knows attn.o_proj, mlp.down_proj)");
  file = ValidFile();
  file["parameters"]["abliteration_parameters"]["attn.o_proj"]["scale"] = 1;
  EXPECT_EQ(Error(file),
            "reproduce.json: parameters.abliteration_parameters.attn.o_proj.scale is not a field "
            "of Heretic's AbliterationParameters");
  file = ValidFile();
  file["settings"]["n_layers"] = 3;
  EXPECT_EQ(Error(file), "reproduce.json: settings.n_layers is not a Heretic setting");
  file = ValidFile();
  file["settings"]["good_prompts"]["revision"] = "main";
  EXPECT_EQ(Error(file),
            "reproduce.json: settings.good_prompts.revision is not a key of Heretic's dataset "
            "specification");
  file = ValidFile();
  file["plugins"] = json::object();
  EXPECT_EQ(Error(file), "reproduce.json: plugins is not a key of reproduce.json version \"2\"");
  file = ValidFile();
  file["metrics"]["score"] = 1.0;
  EXPECT_EQ(Error(file), "reproduce.json: metrics.score is not one of Heretic's metrics");
  file = ValidFile();
  file["parameters"]["direction_scope"] = "global";
  EXPECT_EQ(Error(file),
            "reproduce.json: parameters.direction_scope is not a key of Heretic's parameters");
}

TEST(HereticReproduce, RefusesValuesSchismCannotHonourNamingThem) {
  json file = ValidFile();
  file["parameters"]["abliteration_parameters"]["mlp.down_proj"]["max_weight"] = -0.1;
  EXPECT_NE(Error(file).find("parameters.abliteration_parameters.mlp.down_proj.max_weight is "
                             "negative"),
            std::string::npos);
  // A negative attention max_weight is applied as is by both.
  file = ValidFile();
  file["parameters"]["abliteration_parameters"]["attn.o_proj"]["max_weight"] = -0.5;
  file["parameters"]["abliteration_parameters"]["attn.o_proj"]["min_weight"] = -0.25;
  auto negative = Parse(file);
  ASSERT_TRUE(negative.ok()) << negative.status();
  EXPECT_EQ(Number(negative->params, "attn.o_proj.min_weight"), 0.5);

  file = ValidFile();
  file["parameters"]["abliteration_parameters"]["attn.o_proj"]["max_weight"] = 0;
  EXPECT_NE(Error(file).find("attn.o_proj.min_weight is not 0 while max_weight is"),
            std::string::npos);
  file["parameters"]["abliteration_parameters"]["attn.o_proj"]["min_weight"] = 0;
  EXPECT_EQ(Error(file), "");
  file["parameters"]["abliteration_parameters"]["attn.o_proj"]["min_weight_distance"] = 0;
  EXPECT_EQ(Error(file),
            "reproduce.json: parameters.abliteration_parameters.attn.o_proj.min_weight_distance "
            "must be > 0 (Heretic divides by it)");

  file = ValidFile();
  file["settings"]["dtypes"] = json::array({"auto", "float64"});
  EXPECT_NE(Error(file).find("settings.dtypes[1] \"float64\""), std::string::npos);
  file = ValidFile();
  file["settings"]["quantization"] = "bnb_8bit";
  EXPECT_NE(Error(file).find("settings.quantization \"bnb_8bit\" is not one of"),
            std::string::npos);
  file = ValidFile();
  file["settings"]["evaluate_model"] = "org/other";
  EXPECT_NE(Error(file).find("settings.evaluate_model makes Heretic evaluate another model"),
            std::string::npos);
  file["settings"]["evaluate_model"] = nullptr;
  EXPECT_EQ(Error(file), "");

  // The LoRA rank only counts with full row normalization.
  file = ValidFile();
  file["settings"]["full_normalization_lora_rank"] = 8;
  auto unused = Parse(file);
  ASSERT_TRUE(unused.ok()) << unused.status();
  EXPECT_EQ(unused->settings.not_applied,
            (std::vector<std::string>{"settings.full_normalization_lora_rank"}));
  file["settings"]["row_normalization"] = "full";
  EXPECT_NE(Error(file).find("settings.full_normalization_lora_rank must be 3 with "
                             "row_normalization \"full\""),
            std::string::npos);
  file["settings"].erase("row_normalization");  // Heretic's default is "full"
  EXPECT_NE(Error(file).find("full_normalization_lora_rank must be 3"), std::string::npos);
  file["settings"]["full_normalization_lora_rank"] = 3;
  EXPECT_EQ(Error(file), "");

  // Custom chain-of-thought pairs only steer prefix detection.
  file = ValidFile();
  file["settings"]["chain_of_thought_skips"] = json::array({json::array({"<t>", "<t></t>"})});
  EXPECT_NE(Error(file).find("settings.chain_of_thought_skips is set and response_prefix is not"),
            std::string::npos);
  file["settings"]["response_prefix"] = "<t></t>";
  auto skips = Parse(file);
  ASSERT_TRUE(skips.ok()) << skips.status();
  EXPECT_EQ(skips->settings.not_applied,
            (std::vector<std::string>{"settings.chain_of_thought_skips"}));

  file = ValidFile();
  file["hashes"]["../outside.safetensors"] = file["hashes"]["model.safetensors"];
  EXPECT_EQ(Error(file),
            "reproduce.json: hashes.../outside.safetensors must be a relative file name inside the "
            "model folder");
  file = ValidFile();
  file["hashes"]["model.safetensors"] = "abc";
  EXPECT_EQ(Error(file),
            "reproduce.json: hashes.model.safetensors must be a SHA-256 (64 hexadecimal digits)");
}

TEST(HereticReproduce, ReadsMaxShardSizeAsSavePretrainedDoes) {
  auto bytes = [](const json& size) -> std::optional<uint64_t> {
    json file = ValidFile();
    file["settings"]["max_shard_size"] = size;
    auto r = Parse(file);
    return r.ok() ? r->settings.max_shard_bytes : std::nullopt;
  };
  EXPECT_EQ(bytes("5GB"), 5000000000u);
  EXPECT_EQ(bytes("5gB"), 5000000000u);
  EXPECT_EQ(bytes("5Gb"), 625000000u);  // a final lower-case b: bits
  EXPECT_EQ(bytes("5gb"), 625000000u);
  EXPECT_EQ(bytes("2GiB"), 2147483648u);
  EXPECT_EQ(bytes("500MB"), 500000000u);
  EXPECT_EQ(bytes("64KiB"), 65536u);
  EXPECT_EQ(bytes(123456), 123456u);
  EXPECT_EQ(bytes("5TB"), std::nullopt);
  EXPECT_EQ(bytes("1.5GB"), std::nullopt);
  EXPECT_EQ(bytes("GB"), std::nullopt);
  EXPECT_EQ(bytes(0), std::nullopt);
  json file = ValidFile();
  file["settings"]["max_shard_size"] = "5TB";
  EXPECT_NE(Error(file).find("settings.max_shard_size \"5TB\" is not a size save_pretrained reads"),
            std::string::npos);
}

TEST(HereticReproduce, FillsAnAbsentComponentAsUntouched) {
  json file = ValidFile();
  file["parameters"]["abliteration_parameters"].erase("mlp.down_proj");
  file["parameters"]["direction_index"] = nullptr;
  auto r = Parse(file);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->absent_components, (std::vector<std::string>{"mlp.down_proj"}));
  EXPECT_EQ(Text(r->params, "direction_scope"), "per layer");
  auto params = TrialParametersFromValues(r->params);
  ASSERT_TRUE(params.ok()) << params.status();
  EXPECT_FALSE(params->global_direction);
  EXPECT_EQ(LayerWeights(params->components.at(kMlpComponent), 30), std::vector<double>(30, 0.0));
}

// Heretic stores min_weight = fraction * max_weight; the fraction read back must give that
// product exactly through LayerWeights' min_weight * max_weight. Values not written so (an
// edited file) come within an ulp.
TEST(HereticReproduce, MinWeightFractionRestoresHereticsProductExactly) {
  std::mt19937_64 rng(12345);
  std::uniform_real_distribution<double> fraction(0.0, 1.0), max_weight(0.8, 1.5);
  auto read_back = [](double max_weight, double min_weight) {
    json file = ValidFile();
    file["parameters"]["abliteration_parameters"]["attn.o_proj"]["max_weight"] = max_weight;
    file["parameters"]["abliteration_parameters"]["attn.o_proj"]["min_weight"] = min_weight;
    auto r = Parse(file);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? Number(r->params, "attn.o_proj.min_weight") * max_weight : NAN;
  };
  for (int i = 0; i < 2000; ++i) {
    const double f = fraction(rng), m = max_weight(rng);
    EXPECT_EQ(read_back(m, f * m), f * m) << f << " " << m;
    const double edited = std::round(f * 1e4) / 1e4, edited_max = std::round(m * 1e4) / 1e4;
    const double back = read_back(edited_max, edited);
    EXPECT_LE(std::fabs(back - edited), std::nextafter(edited, INFINITY) - edited)
        << edited << " " << edited_max;
  }
}

}  // namespace
}  // namespace schism::common
