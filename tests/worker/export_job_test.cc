// The export (docs/architecture.md#export-output): a merged full-precision folder and a PEFT
// adapter for a trial, reloaded and compared with the adapted in-memory model, checked against
// PEFT's formulas (tests/oracles/export_reference.py), and the rules on destinations.
#include "worker/export_job.h"
#include "worker/export_worker.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "common/env.h"
#include "common/formats/safetensors.h"
#include "common/prompt_set.h"
#include "common/sha256.h"
#include "common/staged_folder.h"
#include "tests/test_support.h"
#include "tests/worker/runtime/llama_cpp_oracle.h"
#include "worker/runtime/directions.h"
#include "worker/runtime/model_loader.h"
#include "worker/runtime/trial_evaluator.h"

namespace schism::worker {
namespace {

namespace fs = std::filesystem;
using testing_support::MakeTempDir;
using testing_support::RealModelPath;
using testing_support::RunOracle;

constexpr const char* kSystem = "You are a helpful assistant.";

// A trial that touches every layer of a 3-layer model with different weights per layer.
std::string TinyTrialJson() {
  return R"({"direction_scope": "global", "direction_index": 1.4,
             "attn.o_proj.max_weight": 1.2, "attn.o_proj.max_weight_position": 1.0,
             "attn.o_proj.min_weight": 0.4, "attn.o_proj.min_weight_distance": 2.0,
             "mlp.down_proj.max_weight": 0.9, "mlp.down_proj.max_weight_position": 0.5,
             "mlp.down_proj.min_weight": 0.6, "mlp.down_proj.min_weight_distance": 1.5})";
}

std::string RandomDirections(int rows, int hidden, const std::string& path) {
  at::manual_seed(3);
  auto d = at::randn({rows, hidden});
  d = d / d.norm(2, {1}, true);
  EXPECT_TRUE(model::SaveDirections(path, d).ok());
  return path;
}

std::string WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
  return path;
}

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

std::vector<model::TokenIds> RandomPrompts(int vocab, int n) {
  std::vector<model::TokenIds> prompts;
  for (int i = 0; i < n; ++i) {
    model::TokenIds p(4 + i % 7);
    for (size_t j = 0; j < p.size(); ++j)
      p[j] = static_cast<int32_t>((i * 7919 + j * 104729) % vocab);
    prompts.push_back(p);
  }
  return prompts;
}

// The source with the trial's adapters applied on the fly, as a worker evaluates it.
at::Tensor AdaptedLogits(const model::LoadedModel& source, const at::Tensor& directions,
                         const common::TrialParameters& trial, model::RowNormalization mode,
                         const std::vector<model::TokenIds>& prompts, int32_t pad) {
  model::EvaluatorOptions options;
  options.row_normalization = mode;
  auto evaluator = model::TrialEvaluator::Create(source, directions, {}, {}, options);
  EXPECT_TRUE(evaluator.ok()) << evaluator.status();
  model::AdapterBatch adapters = (*evaluator)->BuildAdapters({trial});
  adapters.row_trial = at::zeros({static_cast<int64_t>(prompts.size())}, at::kLong);
  return model::PromptForward(*source.transformer, prompts, pad, false, &adapters).last_logits;
}

// PEFT's formulas (export_reference.py) applied to `source_dir` with `out`/adapter give `out`'s
// merged weights: `modules` adapted modules, every other tensor equal, the same tensor names.
void ExpectPeftReferenceMatches(const std::string& source_dir, const std::string& out, int modules,
                                const std::string& label) {
  std::string report;
  ASSERT_EQ(RunOracle("export_reference.py", {"peft", source_dir, out + "/adapter", out}, &report),
            0)
      << report;
  const auto peft = nlohmann::json::parse(report.substr(report.find('{')));
  std::cout << label << ": PEFT reference " << peft.dump() << "\n";
  EXPECT_LT(peft["max_rel_err"].get<double>(), 1e-5) << report;
  EXPECT_EQ(peft["modules"].get<int>(), modules);
  EXPECT_TRUE(peft["others_equal"].get<bool>()) << report;
  EXPECT_TRUE(peft["same_tensor_names"].get<bool>()) << report;
  EXPECT_EQ(peft["stray_adapter_keys"].get<int>(), 0);
}

// An export of TinyTrialJson()'s trial of `source` (of config `c`) with random directions.
ExportRequest TinyTrialRequest(const std::string& source, const model::ModelConfig& c,
                               const std::string& dir, const std::string& format) {
  ExportRequest request;
  request.source_model = source;
  request.directions_path =
      RandomDirections(c.num_layers + 1, c.hidden_size, dir + "/directions.bin");
  request.params_json = TinyTrialJson();
  request.format = format;
  return request;
}

class TinyExport : public ::testing::TestWithParam<std::string> {};

TEST_P(TinyExport, MergedReloadsAsTheAdaptedModelAndAdapterMatchesPeft) {
  const std::string mode_name = GetParam();
  const std::string dir = MakeTempDir("export_tiny_" + mode_name);
  std::string log;
  ASSERT_EQ(RunOracle("model_fixtures.py", {"tiny", "qwen3", dir, RealModelPath()}, &log), 0)
      << log;
  const std::string source_dir = dir + "/hf";
  auto source = model::LoadModel(source_dir);
  ASSERT_TRUE(source.ok()) << source.status();
  const model::ModelConfig& c = source->transformer->config();

  ExportRequest request = TinyTrialRequest(source_dir, c, dir, "both");
  request.merge.row_normalization = *model::ParseRowNormalization(mode_name);
  request.merge.max_shard_bytes = 4 << 20;  // several shards for a ~28 MB model
  request.destination = dir + "/out/tiny-abliterated";
  auto result = RunExport(request);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->stats.adapted, 2 * c.num_layers);
  const std::string out = request.destination;
  std::set<std::string> shards;
  const auto index = ReadJson(out + "/model.safetensors.index.json");
  for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
    shards.insert(it.value().get<std::string>());
  }
  EXPECT_GE(shards.size(), 3u);
  for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json",
                        "generation_config.json", "README.md", "reproduce.json",
                        "adapter/adapter_config.json", "adapter/adapter_model.safetensors"}) {
    EXPECT_TRUE(fs::exists(out + "/" + f)) << f;
  }
  // Nothing but the destination appeared next to it (the staging folder was renamed).
  EXPECT_EQ(std::distance(fs::directory_iterator(dir + "/out"), fs::directory_iterator()), 1);

  // Reloaded, the export is the adapted model.
  auto exported = model::LoadModel(out);
  ASSERT_TRUE(exported.ok()) << exported.status();
  auto trial = common::TrialParametersFromJson(request.params_json);
  auto directions = model::LoadDirections(request.directions_path);
  const auto prompts = RandomPrompts(c.vocab_size, 12);
  const at::Tensor expected =
      AdaptedLogits(*source, *directions, *trial, request.merge.row_normalization, prompts, 0);
  const at::Tensor got = model::PromptForward(*exported->transformer, prompts, 0).last_logits;
  const at::Tensor unmodified = model::PromptForward(*source->transformer, prompts, 0).last_logits;
  const float delta = (got - expected).abs().max().item<float>();
  std::cout << mode_name << ": max |logit(export) - logit(adapted)| = " << delta
            << ", vs unmodified " << (got - unmodified).abs().max().item<float>() << "\n";
  EXPECT_LT(delta, 1e-4f);
  EXPECT_GT((got - unmodified).abs().max().item<float>(), 1e-2f);  // the trial changed something
  EXPECT_TRUE(at::equal(got.argmax(-1), expected.argmax(-1)));

  // PEFT's formulas applied to the source give the merged weights.
  ExpectPeftReferenceMatches(source_dir, out, 2 * c.num_layers, mode_name);
  EXPECT_EQ(ReadJson(out + "/adapter/adapter_config.json")["use_dora"].get<bool>(),
            mode_name == "full");

  // reproduce.json: the parameters, the settings, and hashes that match the files.
  const auto reproduce = ReadJson(out + "/reproduce.json");
  EXPECT_EQ(reproduce["trial"]["parameters"]["direction_index"].get<double>(), 1.4);
  EXPECT_EQ(reproduce["export"]["row_normalization"].get<std::string>(), mode_name);
  EXPECT_EQ(reproduce["directions"]["sha256"].get<std::string>(),
            *common::Sha256OfFile(request.directions_path));
  ASSERT_GE(reproduce["outputs"].size(), 10u);
  for (const auto& f : reproduce["outputs"]) {
    EXPECT_EQ(f["sha256"].get<std::string>(),
              *common::Sha256OfFile(out + "/" + f["path"].get<std::string>()))
        << f["path"];
  }
  EXPECT_EQ(reproduce["source"]["files"].size(),
            5u);  // safetensors, config, tokenizer x2, generation
}

INSTANTIATE_TEST_SUITE_P(RowNormalization, TinyExport, ::testing::Values("none", "pre", "full"));

// Layouts other than Llama's: mixtures of experts, where every expert's down projection is
// adapted (each with its own A = vᵀW_e and row norms) and the export keeps the source's
// one-tensor-per-expert layout, and Phi-3, whose fused qkv_proj and gate_up_proj are copied. The
// export reloads as the adapted model, and PEFT's formulas on the adapter give the merged weights.
class LayoutExport : public ::testing::TestWithParam<std::string> {};

TEST_P(LayoutExport, AdaptedTensorsKeepTheSourceLayout) {
  const std::string variant = GetParam();
  const std::string dir = MakeTempDir("export_" + variant);
  std::string log;
  ASSERT_EQ(RunOracle("model_fixtures.py", {"tiny", variant, dir, RealModelPath()}, &log), 0)
      << log;
  const std::string source_dir = dir + "/hf";
  auto source = model::LoadModel(source_dir);
  ASSERT_TRUE(source.ok()) << source.status();
  const model::ModelConfig& c = source->transformer->config();
  ASSERT_EQ(c.num_experts, variant == "phi3" ? 0 : 4);
  const int mlp_tensors_per_layer = std::max(1, c.num_experts);

  ExportRequest request = TinyTrialRequest(source_dir, c, dir, "both");
  request.merge.row_normalization = model::RowNormalization::kFull;
  request.destination = dir + "/out/" + variant + "-abliterated";
  auto result = RunExport(request);
  ASSERT_TRUE(result.ok()) << result.status();
  // o_proj of every layer, and the down projection (of each expert) of every layer.
  EXPECT_EQ(result->stats.adapted, c.num_layers * (1 + mlp_tensors_per_layer));

  const std::string out = request.destination;
  auto exported = model::LoadModel(out);
  ASSERT_TRUE(exported.ok()) << exported.status();
  auto trial = common::TrialParametersFromJson(request.params_json);
  auto directions = model::LoadDirections(request.directions_path);
  const auto prompts = RandomPrompts(c.vocab_size, 8);
  const at::Tensor expected =
      AdaptedLogits(*source, *directions, *trial, request.merge.row_normalization, prompts, 0);
  const at::Tensor got = model::PromptForward(*exported->transformer, prompts, 0).last_logits;
  const at::Tensor unmodified = model::PromptForward(*source->transformer, prompts, 0).last_logits;
  const float delta = (got - expected).abs().max().item<float>();
  std::cout << variant << ": max |logit(export) - logit(adapted)| = " << delta << ", vs unmodified "
            << (got - unmodified).abs().max().item<float>() << "\n";
  EXPECT_LT(delta, 1e-4f);
  EXPECT_GT((got - unmodified).abs().max().item<float>(), 1e-2f);

  ExpectPeftReferenceMatches(source_dir, out, c.num_layers * (1 + mlp_tensors_per_layer), variant);
}

INSTANTIATE_TEST_SUITE_P(Families, LayoutExport, ::testing::Values("qwen3moe", "mixtral", "phi3"));

// A mixture-of-experts GGUF (fused 3-D experts) is refused by export with what to do instead.
TEST(Export, MixtureOfExpertsGgufIsRefusedNamingTheWayOut) {
  const std::string dir = MakeTempDir("export_moe_gguf");
  std::string log;
  ASSERT_EQ(RunOracle("model_fixtures.py", {"tiny", "qwen3moe", dir, RealModelPath()}, &log), 0)
      << log;
  ExportRequest request;
  request.source_model = dir + "/model.gguf";
  request.directions_path = RandomDirections(4, 64, dir + "/directions.bin");
  request.params_json = TinyTrialJson();
  request.destination = dir + "/out/moe";
  auto result = RunExport(request);
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.status().message().find("Hugging Face folder"), std::string::npos)
      << result.status();
  EXPECT_FALSE(fs::exists(request.destination));
}

// Vision-language checkpoints as transformers saves them (Gemma 3: the decoder under
// "language_model.model.", a SigLIP tower; Qwen2.5-VL: M-RoPE, a "visual." tower whose MLP also
// has a down_proj): schism's text decoder is transformers' on text prompts, and the export
// adapts only the decoder, leaving every other tensor and config.json byte for byte.
class VisionLanguage : public ::testing::TestWithParam<std::string> {};

TEST_P(VisionLanguage, TextDecoderIsTransformersAndTheExportKeepsTheVisionTower) {
  const std::string kind = GetParam();
  const std::string dir = MakeTempDir("vlm_" + kind);
  std::string log;
  ASSERT_EQ(
      RunOracle("model_fixtures.py", {"tiny", "llama-tied", dir + "/tok", RealModelPath()}, &log),
      0)
      << log;
  const std::string source_dir = dir + "/" + kind;
  ASSERT_EQ(
      testing_support::RunTorchOracle("vlm_fixture.py", {kind, source_dir, dir + "/tok/hf"}, &log),
      0)
      << log;
  auto source = model::LoadModel(source_dir);
  ASSERT_TRUE(source.ok()) << source.status();
  const model::ModelConfig& c = source->transformer->config();
  EXPECT_EQ(c.num_layers, 6);
  const auto prompts = RandomPrompts(c.vocab_size - 8, 6);  // clear of the image tokens
  const at::Tensor logits = model::PromptForward(*source->transformer, prompts, 0).last_logits;
  const model::LlamaCppResult hf =
      model::RunTransformers(source_dir, prompts, c.vocab_size, 16, "vlm_hf_" + kind);
  ASSERT_TRUE(hf.logits.defined());
  const float vs_hf = (logits - hf.logits).abs().max().item<float>();
  model::GreedyOptions greedy_options;
  greedy_options.max_new_tokens = 16;
  EXPECT_EQ(model::GreedyGenerate(*source->transformer, prompts, greedy_options), hf.greedy);

  ExportRequest request = TinyTrialRequest(source_dir, c, dir, "merged");
  request.destination = dir + "/out/vlm-abliterated";
  auto result = RunExport(request);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_GT(result->stats.adapted, 0);
  const std::string out = request.destination;
  EXPECT_EQ(testing_support::ReadFile(out + "/config.json"),
            testing_support::ReadFile(source_dir + "/config.json"));
  auto before = formats::SafetensorsModel::Open(source_dir);
  auto after = formats::SafetensorsModel::Open(out);
  ASSERT_TRUE(before.ok() && after.ok());
  int outside_decoder = 0;
  for (const auto& shard : (*before)->shards()) {
    for (const formats::SafetensorsTensor& t : shard->tensors()) {
      const formats::SafetensorsTensor* copy = (*after)->Find(t.name);
      ASSERT_NE(copy, nullptr) << t.name;
      if (absl::StartsWith(t.name, "model.layers.") ||
          absl::StartsWith(t.name, "language_model.model.layers.")) {
        continue;  // decoder layers: adapted or not
      }
      ++outside_decoder;
      EXPECT_EQ(std::string(reinterpret_cast<const char*>(copy->data), copy->n_bytes),
                std::string(reinterpret_cast<const char*>(t.data), t.n_bytes))
          << t.name;
    }
  }
  EXPECT_GT(outside_decoder, 20);  // the vision tower and projector, embeddings, final norm

  auto exported = model::LoadModel(out);
  ASSERT_TRUE(exported.ok()) << exported.status();
  auto trial = common::TrialParametersFromJson(request.params_json);
  auto directions = model::LoadDirections(request.directions_path);
  const at::Tensor expected =
      AdaptedLogits(*source, *directions, *trial, request.merge.row_normalization, prompts, 0);
  const at::Tensor got = model::PromptForward(*exported->transformer, prompts, 0).last_logits;
  const at::Tensor hf_export =
      model::RunTransformers(out, prompts, c.vocab_size, 1, "vlm_hf_export_" + kind).logits;
  ASSERT_TRUE(hf_export.defined());
  const float vs_adapted = (got - expected).abs().max().item<float>();
  const float export_vs_hf = (got - hf_export).abs().max().item<float>();
  std::cout << kind << ": max |logit(schism) - logit(transformers)| = " << vs_hf
            << "; export: vs adapted " << vs_adapted << ", vs transformers on it " << export_vs_hf
            << ", vs unmodified " << (got - logits).abs().max().item<float>() << "\n";
  // Measured: 4e-6 (gemma3) and 1.5e-5 to 2.1e-5 (qwen2_5_vl) for all three.
  EXPECT_LT(vs_hf, 5e-5f);
  EXPECT_LT(vs_adapted, 5e-5f);
  EXPECT_LT(export_vs_hf, 5e-5f);
  EXPECT_GT((got - logits).abs().max().item<float>(), 1e-2f);
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, VisionLanguage, ::testing::Values("gemma3", "qwen2_5_vl"));

// Phi-3 from a GGUF (fused attn_qkv, gate and up in one ffn_up, partial rotary): the export is a
// Hugging Face Phi-3 that transformers loads and that computes what schism computes on it.
TEST(Export, Phi3FromGgufIsAModelTransformersLoads) {
  const std::string dir = MakeTempDir("export_phi3_gguf");
  std::string log;
  ASSERT_EQ(RunOracle("model_fixtures.py", {"tiny", "phi3", dir, RealModelPath()}, &log), 0) << log;
  auto source = model::LoadModel(dir + "/model.gguf");
  ASSERT_TRUE(source.ok()) << source.status();
  const model::ModelConfig& c = source->transformer->config();
  EXPECT_EQ(c.RotaryDim(), c.head_dim / 2);
  ExportRequest request = TinyTrialRequest(dir + "/model.gguf", c, dir, "merged");
  request.destination = dir + "/out/phi3";
  auto result = RunExport(request);
  ASSERT_TRUE(result.ok()) << result.status();
  auto exported = model::LoadModel(request.destination);
  ASSERT_TRUE(exported.ok()) << exported.status();
  const auto prompts = RandomPrompts(c.vocab_size, 6);
  const at::Tensor got = model::PromptForward(*exported->transformer, prompts, 0).last_logits;
  const at::Tensor hf =
      model::RunTransformers(request.destination, prompts, c.vocab_size, 1, "phi3_hf").logits;
  ASSERT_TRUE(hf.defined());
  const float delta = (got - hf).abs().max().item<float>();
  std::cout << "phi3 export: max |logit(transformers) - logit(schism)| = " << delta << "\n";
  EXPECT_LT(delta, 1e-4f);
}

// Gemma 3 from a GGUF (its norms stored as 1 + w, its own tensor names): the exported folder is a
// Hugging Face Gemma 3 that transformers loads and that computes the adapted model.
TEST(Export, Gemma3FromGgufIsTheAdaptedModelInTransformers) {
  const std::string dir = MakeTempDir("export_gemma3");
  std::string log;
  ASSERT_EQ(RunOracle("model_fixtures.py", {"tiny", "gemma3", dir, RealModelPath()}, &log), 0)
      << log;
  const std::string source_path = dir + "/model.gguf";
  auto source = model::LoadModel(source_path);
  ASSERT_TRUE(source.ok()) << source.status();
  const model::ModelConfig& c = source->transformer->config();

  ExportRequest request = TinyTrialRequest(source_path, c, dir, "merged");
  request.merge.row_normalization = model::RowNormalization::kFull;
  request.destination = dir + "/out/gemma3-abliterated";
  auto result = RunExport(request);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_GT(result->stats.adapted, 0);

  const std::string out = request.destination;
  const auto config = ReadJson(out + "/config.json");
  EXPECT_EQ(config["model_type"], "gemma3_text");
  EXPECT_EQ(config["layer_types"].size(), 6u);
  auto exported = model::LoadModel(out);
  ASSERT_TRUE(exported.ok()) << exported.status();
  EXPECT_EQ(exported->transformer->config().sliding_layers, c.sliding_layers);
  auto trial = common::TrialParametersFromJson(request.params_json);
  auto directions = model::LoadDirections(request.directions_path);
  const auto prompts = RandomPrompts(c.vocab_size, 6);
  const at::Tensor expected =
      AdaptedLogits(*source, *directions, *trial, request.merge.row_normalization, prompts, 0);
  const at::Tensor got = model::PromptForward(*exported->transformer, prompts, 0).last_logits;
  const at::Tensor unmodified = model::PromptForward(*source->transformer, prompts, 0).last_logits;
  EXPECT_GT((got - unmodified).abs().max().item<float>(), 1e-2f);  // the trial changed something
  const float vs_adapted = (got - expected).abs().max().item<float>();

  // transformers on the exported folder, one prompt at a time.
  const at::Tensor hf =
      model::RunTransformers(out, prompts, c.vocab_size, 1, "gemma3_export_hf").logits;
  ASSERT_TRUE(hf.defined());
  const float vs_transformers = (hf - got).abs().max().item<float>();
  std::cout << "gemma3 export: max |logit(export) - logit(adapted)| = " << vs_adapted
            << ", |logit(transformers on the export) - logit(schism on it)| = " << vs_transformers
            << "\n";
  EXPECT_LT(vs_adapted, 2e-5f);       // measured 4.1e-6
  EXPECT_LT(vs_transformers, 2e-5f);  // measured 3.3e-6
}

std::vector<std::string> PromptLines(const std::string& file, const std::string& split) {
  auto lines = common::LoadPromptLines(common::DefaultDataDir() + "/" + file, split);
  EXPECT_TRUE(lines.ok()) << lines.status();
  return *lines;
}

// Mean KL(p || q) of rows of log-probabilities, in nats.
double MeanKl(const at::Tensor& log_p, const at::Tensor& log_q) {
  return (log_p.exp() * (log_p - log_q)).sum(-1).mean().item<double>();
}

TEST(Export, RealModelFromGgufReloadsWithTheSameLogitsTokenizerAndScores) {
  const std::string dir = MakeTempDir("export_real");
  auto source = model::LoadModel(RealModelPath());
  ASSERT_TRUE(source.ok()) << source.status();
  const model::Transformer& t = *source->transformer;
  const int32_t pad = source->tokenizer->spec().pad_id.value_or(source->stop_ids[0]);
  auto good =
      model::EncodeChatPrompts(*source, PromptLines("harmless_train.txt", "[:32]"), kSystem, "");
  auto bad =
      model::EncodeChatPrompts(*source, PromptLines("harmful_train.txt", "[:32]"), kSystem, "");
  const at::Tensor directions = model::RefusalDirections(
      model::ResidualMeans(t, *good, pad, 16), model::ResidualMeans(t, *bad, pad, 16), true);
  ExportRequest request;
  request.source_model = RealModelPath();
  request.directions_path = dir + "/directions.bin";
  ASSERT_TRUE(model::SaveDirections(request.directions_path, directions).ok());
  request.params_json = R"({"direction_scope": "global", "direction_index": 17.5,
      "attn.o_proj.max_weight": 1.0, "attn.o_proj.max_weight_position": 20, "attn.o_proj.min_weight": 0.5,
      "attn.o_proj.min_weight_distance": 12, "mlp.down_proj.max_weight": 0.8,
      "mlp.down_proj.max_weight_position": 20, "mlp.down_proj.min_weight": 0.5,
      "mlp.down_proj.min_weight_distance": 12})";
  request.destination = dir + "/SmolLM2-abliterated";
  auto result = RunExport(request);
  ASSERT_TRUE(result.ok()) << result.status();
  std::cout << "real model export: " << result->files.size() << " files, " << result->stats.adapted
            << " weights adapted, " << result->seconds << " s\n";
  auto exported = model::LoadModel(request.destination);
  ASSERT_TRUE(exported.ok()) << exported.status();
  EXPECT_EQ(exported->chat_template, source->chat_template);
  EXPECT_EQ(exported->stop_ids, source->stop_ids);
  EXPECT_EQ(exported->transformer->config().num_layers, t.config().num_layers);

  // Same token ids from the export's tokenizer.json, in schism and in Hugging Face tokenizers.
  std::vector<std::string> texts;
  for (const std::string& p : PromptLines("harmful_test.txt", "[:20]")) {
    texts.push_back("<|im_start|>user\n" + p + "<|im_end|>\n<|im_start|>assistant\n");
  }
  texts.push_back("naïve café 日本語 😀 3.14159 x = [1, 2]\n\n  done");
  nlohmann::json strings = texts;
  WriteText(dir + "/strings.json", strings.dump());
  std::string log;
  ASSERT_EQ(RunOracle("export_reference.py",
                      {"tokenizer", request.destination + "/tokenizer.json", dir + "/strings.json",
                       dir + "/ids.json"},
                      &log),
            0)
      << log;
  const auto hf_ids = ReadJson(dir + "/ids.json");
  for (size_t i = 0; i < texts.size(); ++i) {
    const model::TokenIds ids = source->tokenizer->Encode(texts[i], /*add_bos=*/false);
    EXPECT_EQ(exported->tokenizer->Encode(texts[i], false), ids) << texts[i];
    EXPECT_EQ(hf_ids[i].get<std::vector<int32_t>>(), ids) << texts[i];
  }

  // Next-token logits: the reloaded export against the source with the trial's adapters.
  auto trial = common::TrialParametersFromJson(request.params_json);
  ASSERT_TRUE(trial.ok());
  std::vector<std::string> lines = PromptLines("harmful_test.txt", "[:16]");
  for (const std::string& l : PromptLines("harmless_test.txt", "[:16]")) lines.push_back(l);
  auto prompts = model::EncodeChatPrompts(*source, lines, kSystem, "");
  const at::Tensor expected =
      AdaptedLogits(*source, directions, *trial, model::RowNormalization::kFull, *prompts, pad);
  const at::Tensor got = model::PromptForward(*exported->transformer, *prompts, pad).last_logits;
  const float delta = (got - expected).abs().max().item<float>();
  std::cout << "real model: max |logit(export) - logit(adapted)| = " << delta << " over "
            << prompts->size() << " prompts\n";
  EXPECT_LT(delta, 2e-3f);
  EXPECT_TRUE(at::equal(got.argmax(-1), expected.argmax(-1)));

  // The export scores what the trial scored.
  model::EvaluatorOptions options;
  options.max_response_length = 32;
  auto refusal =
      model::EncodeChatPrompts(*source, PromptLines("harmful_test.txt", "[:24]"), kSystem, "");
  auto kl =
      model::EncodeChatPrompts(*source, PromptLines("harmless_test.txt", "[:24]"), kSystem, "");
  auto on_source = model::TrialEvaluator::Create(*source, directions, *refusal, *kl, options);
  ASSERT_TRUE(on_source.ok());
  const model::TrialScores trial_scores = (*on_source)->Evaluate({*trial})[0];
  auto on_export = model::TrialEvaluator::Create(*exported, directions, *refusal, *kl, options);
  ASSERT_TRUE(on_export.ok());
  const int export_refusals = (*on_export)->Baseline().refusals;
  const double export_kl = MeanKl(
      at::log_softmax(model::PromptForward(t, *kl, pad).last_logits, -1),
      at::log_softmax(model::PromptForward(*exported->transformer, *kl, pad).last_logits, -1));
  std::cout << "trial: " << trial_scores.refusals << "/24 refusals, KL "
            << trial_scores.kl_divergence << "; export: " << export_refusals << "/24, KL "
            << export_kl << "\n";
  EXPECT_EQ(export_refusals, trial_scores.refusals);
  EXPECT_NEAR(export_kl, trial_scores.kl_divergence, 0.02 * trial_scores.kl_divergence + 1e-5);
  EXPECT_GT(trial_scores.kl_divergence, 1e-4);
}

TEST(Export, Bfloat16OutputIsTheFloat32ExportRoundedOnce) {
  const std::string dir = MakeTempDir("export_bf16");
  std::string log;
  ASSERT_EQ(RunOracle("model_fixtures.py", {"tiny", "llama-tied", dir, RealModelPath()}, &log), 0)
      << log;
  auto config = model::ModelConfigFromHfJson(dir + "/hf/config.json");
  ASSERT_TRUE(config.ok());
  ExportRequest request;
  request.source_model = dir + "/hf";
  request.directions_path =
      RandomDirections(config->num_layers + 1, config->hidden_size, dir + "/d.bin");
  request.params_json = TinyTrialJson();
  request.destination = dir + "/f32";
  ASSERT_TRUE(RunExport(request).ok());
  request.merge.dtype = formats::SafetensorsDtype::kBF16;
  request.destination = dir + "/bf16";
  ASSERT_TRUE(RunExport(request).ok());
  EXPECT_EQ(ReadJson(dir + "/bf16/config.json")["torch_dtype"].get<std::string>(), "bfloat16");
  auto f32 = formats::SafetensorsModel::Open(dir + "/f32");
  auto bf16 = formats::SafetensorsModel::Open(dir + "/bf16");
  ASSERT_TRUE(f32.ok() && bf16.ok());
  ASSERT_EQ((*f32)->TensorNames(), (*bf16)->TensorNames());
  // Tied embeddings stay tied: no lm_head in the export, as in the source.
  EXPECT_EQ((*bf16)->Find("lm_head.weight"), nullptr);
  for (const std::string& name : (*bf16)->TensorNames()) {
    const formats::SafetensorsTensor* a = (*f32)->Find(name);
    const formats::SafetensorsTensor* b = (*bf16)->Find(name);
    ASSERT_EQ(a->dtype, formats::SafetensorsDtype::kF32) << name;
    ASSERT_EQ(b->dtype, formats::SafetensorsDtype::kBF16) << name;
    const at::Tensor full = at::from_blob(const_cast<uint8_t*>(a->data), a->shape, at::kFloat);
    const at::Tensor half = at::from_blob(const_cast<uint8_t*>(b->data), b->shape, at::kBFloat16);
    EXPECT_TRUE(at::equal(full.to(at::kBFloat16), half)) << name;
  }
  EXPECT_TRUE(model::LoadModel(dir + "/bf16").ok());
}

TEST(Export, DestinationsStayInsideTheOutputRoot) {
  const std::string root = MakeTempDir("export_root");
  const std::string outside = MakeTempDir("export_outside");
  fs::create_symlink(outside, root + "/escape");
  EXPECT_TRUE(common::ResolveExportDestination(root, "models/a").ok());
  for (const std::string& dest : {std::string("../x"), std::string("a/../../x"), outside + "/x",
                                  std::string("escape/x"), std::string("."), std::string("")}) {
    auto resolved = common::ResolveExportDestination(root, dest);
    EXPECT_FALSE(resolved.ok()) << dest << " -> " << *resolved;
  }
  auto escaped = common::ResolveExportDestination(root, "escape/x");
  EXPECT_EQ(escaped.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(escaped.status().message().find("outside the output root"), std::string::npos)
      << escaped.status();
  EXPECT_FALSE(common::ResolveExportDestination(root + "/missing", "x").ok());
}

TEST(Export, ExistingDestinationIsKeptUnlessOverwriteAndFailuresLeaveNothing) {
  const std::string dir = MakeTempDir("export_overwrite");
  std::string log;
  ASSERT_EQ(RunOracle("model_fixtures.py", {"tiny", "llama-tied", dir, RealModelPath()}, &log), 0)
      << log;
  auto source = model::LoadModel(dir + "/hf");
  ASSERT_TRUE(source.ok());
  const model::ModelConfig& c = source->transformer->config();
  fs::create_directories(dir + "/out/dest");
  WriteText(dir + "/out/dest/old.txt", "old");

  ExportRequest request;
  request.source_model = dir + "/hf";
  request.directions_path = RandomDirections(c.num_layers + 1, c.hidden_size, dir + "/d.bin");
  request.params_json = TinyTrialJson();
  request.format = "adapter";
  request.destination = dir + "/out/dest";
  auto refused = RunExport(request);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(refused.status().message().find("--overwrite"), std::string::npos) << refused.status();
  EXPECT_TRUE(fs::exists(dir + "/out/dest/old.txt"));

  // A staging folder left by a killed export (its pid is gone) is cleared by the next export.
  fs::create_directories(dir + "/out/.new.partial-2147483000-7/stale");
  // Directions of another model: the export fails and leaves neither a destination nor debris.
  ExportRequest bad = request;
  bad.destination = dir + "/out/new";
  bad.directions_path = RandomDirections(c.num_layers + 3, c.hidden_size, dir + "/wrong.bin");
  auto failed = RunExport(bad);
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.status().message().find("another model"), std::string::npos) << failed.status();
  EXPECT_EQ(std::distance(fs::directory_iterator(dir + "/out"), fs::directory_iterator()), 1);

  // The destination does not hold this export; a finished one is found again, intact or not.
  EXPECT_EQ(FindFinishedExport(dir + "/out/dest", "", -1, "adapter").status().code(),
            absl::StatusCode::kNotFound);
  // A truncated source: the error names the file, and nothing is left behind.
  fs::create_directories(dir + "/cut");
  for (const char* f :
       {"config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"}) {
    fs::copy_file(dir + "/hf/" + f, dir + "/cut/" + f);
  }
  fs::copy_file(dir + "/hf/model.safetensors", dir + "/cut/model.safetensors");
  fs::resize_file(dir + "/cut/model.safetensors", fs::file_size(dir + "/hf/model.safetensors") / 2);
  ExportRequest truncated = bad;
  truncated.source_model = dir + "/cut";
  truncated.directions_path = request.directions_path;
  auto cut = RunExport(truncated);
  ASSERT_FALSE(cut.ok());
  EXPECT_NE(cut.status().message().find("cut/model.safetensors"), std::string::npos)
      << cut.status();
  EXPECT_EQ(std::distance(fs::directory_iterator(dir + "/out"), fs::directory_iterator()), 1);

  request.overwrite = true;
  auto replaced = RunExport(request);
  ASSERT_TRUE(replaced.ok()) << replaced.status();
  EXPECT_FALSE(fs::exists(dir + "/out/dest/old.txt"));
  EXPECT_TRUE(fs::exists(dir + "/out/dest/adapter_model.safetensors"));
  EXPECT_FALSE(fs::exists(dir + "/out/dest/model.safetensors"));  // adapter only
  EXPECT_EQ(std::distance(fs::directory_iterator(dir + "/out"), fs::directory_iterator()), 1);
  auto found = FindFinishedExport(dir + "/out/dest", "", -1, "adapter");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->size(), replaced->files.size());
  EXPECT_EQ((*found)[0].sha256, replaced->files[0].sha256);
  EXPECT_EQ(FindFinishedExport(dir + "/out/dest", "", 3, "adapter").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(FindFinishedExport(dir + "/out/dest", "", -1, "merged").status().code(),
            absl::StatusCode::kNotFound);
  WriteText(dir + "/out/dest/adapter_config.json", "{}");
  auto tampered = FindFinishedExport(dir + "/out/dest", "", -1, "adapter");
  EXPECT_EQ(tampered.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(tampered.status().message().find("adapter_config.json"), std::string::npos)
      << tampered.status();
}

TEST(Export, DirectionsLeftByAKilledExportWorkerAreRemovedAtStart) {
  namespace fs = std::filesystem;
  const std::string root = testing_support::MakeTempDir("stale_directions");
  auto file = [&](const std::string& name) {
    const std::string path = root + "/.directions-x00ab-" + name + ".bin";
    std::ofstream(path) << "SCHDIR1";
    return path;
  };
  const std::string killed = file("host-a-4242");         // its export died: nobody holds it
  const std::string elsewhere = file("other-host-7-17");  // died on another host sharing the root
  const std::string running = file("host-b-99");          // a live export holds its lock
  const int live = ::open(running.c_str(), O_RDONLY);
  ASSERT_GE(live, 0);
  ASSERT_EQ(::flock(live, LOCK_EX), 0);
  const std::string unrelated = root + "/model.safetensors";
  std::ofstream(unrelated) << "x";
  EXPECT_EQ(worker::RemoveStaleDirections(root), 2);
  EXPECT_FALSE(fs::exists(killed));
  EXPECT_FALSE(fs::exists(elsewhere));
  EXPECT_TRUE(fs::exists(running));
  EXPECT_TRUE(fs::exists(unrelated));
  ::close(live);
  EXPECT_EQ(worker::RemoveStaleDirections(root), 1)
      << "once its export ends (or dies), the lock goes with it";
}

TEST(Export, Sha256MatchesKnownVectors) {
  EXPECT_EQ(common::Sha256Hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(common::Sha256Hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  const std::string dir = MakeTempDir("sha");
  std::string big(3 << 20, 'a');  // spans several read chunks
  WriteText(dir + "/f", big);
  EXPECT_EQ(*common::Sha256OfFile(dir + "/f"), common::Sha256Hex(big));
  EXPECT_EQ(common::Sha256OfFile(dir + "/missing").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace schism::worker
