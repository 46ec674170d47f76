// The ablation core on the real model (SmolLM2-135M-Instruct Q4_1), CPU, float32.
#include "worker/runtime/trial_evaluator.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>

#include <nlohmann/json.hpp>

#include "common/env.h"
#include "common/prompt_set.h"
#include "common/refusal_markers.h"
#include "tests/test_support.h"
#include "worker/runtime/directions.h"
#include "worker/runtime/frozen_prompts.h"
#include "worker/runtime/model_export.h"
#include "worker/runtime/perplexity.h"
#include "worker/runtime/tensor_source.h"

namespace schism::model {
namespace {

constexpr const char* kSystem = "You are a helpful assistant.";

struct Fixture {
  LoadedModel model;
  at::Tensor directions;
};

Fixture& Shared() {
  static Fixture* f = [] {
    auto model = LoadModel(testing_support::RealModelPath());
    EXPECT_TRUE(model.ok()) << model.status();
    auto* fixture = new Fixture{std::move(*model), {}};
    const std::string data = common::DefaultDataDir();
    auto good = EncodeChatPrompts(fixture->model,
                                  *common::LoadPromptLines(data + "/harmless_train.txt", "[:64]"),
                                  kSystem, "");
    auto bad = EncodeChatPrompts(fixture->model,
                                 *common::LoadPromptLines(data + "/harmful_train.txt", "[:64]"),
                                 kSystem, "");
    const Transformer& t = *fixture->model.transformer;
    // Every test process of this file needs them (~20 s of forward passes each): computed once
    // per test run, keyed by the model file and the prompts.
    std::string key = testing_support::RealModelPath() + "\n" +
                      std::to_string(std::filesystem::file_size(testing_support::RealModelPath()));
    for (const auto* set : {&*good, &*bad}) {
      for (const TokenIds& ids : *set) {
        key += "\n";
        for (int32_t id : ids) key += std::to_string(id) + " ";
      }
    }
    const std::string path =
        testing_support::MakeOnce("evaluator_directions", key, [&](const std::string& out) {
          auto directions = RefusalDirections(ResidualMeans(t, *good, 2, 32),
                                              ResidualMeans(t, *bad, 2, 32), true);
          return SaveDirections(out, directions).ok();
        });
    auto directions = LoadDirections(path);
    EXPECT_TRUE(directions.ok()) << directions.status();
    fixture->directions = *directions;
    return fixture;
  }();
  return *f;
}

std::vector<TokenIds> Prompts(const std::string& file, const std::string& split) {
  auto lines = common::LoadPromptLines(common::DefaultDataDir() + "/" + file, split);
  EXPECT_TRUE(lines.ok()) << lines.status();
  return *EncodeChatPrompts(Shared().model, *lines, kSystem, "");
}

common::TrialParameters Trial(double attn_weight, double mlp_weight, double position,
                              bool global = true) {
  common::TrialParameters p;
  p.global_direction = global;
  p.direction_index = 17.5;
  p.components[common::kAttentionComponent] = {attn_weight, position, 0.5, 12.0};
  p.components[common::kMlpComponent] = {mlp_weight, position, 0.5, 12.0};
  return p;
}

std::unique_ptr<TrialEvaluator> MakeEvaluator(std::vector<TokenIds> refusal,
                                              std::vector<TokenIds> kl, int max_len = 100,
                                              RowNormalization mode = RowNormalization::kFull,
                                              bool continuous = true, bool share_prefix = true,
                                              bool freeze = true) {
  EvaluatorOptions options;
  options.freeze_unmodified_layers = freeze;
  options.max_response_length = max_len;
  options.row_normalization = mode;
  options.continuous_batching = continuous;
  options.share_prefix = share_prefix;
  auto e = TrialEvaluator::Create(Shared().model, Shared().directions, std::move(refusal),
                                  std::move(kl), options);
  EXPECT_TRUE(e.ok()) << e.status();
  return std::move(*e);
}

TEST(RefusalDirections, AreUnitRowsOrthogonalToTheHarmlessMeanAndSurviveTheArtifact) {
  const at::Tensor& r = Shared().directions;
  ASSERT_EQ(r.size(0), Shared().model.transformer->config().num_layers + 1);
  // Row 0 (the embedding output) is zero: every prompt ends in the same token, so the harmful
  // and harmless means coincide there. Every layer's row is a unit vector.
  EXPECT_EQ(r[0].norm().item<float>(), 0.0f);
  EXPECT_LT((r.narrow(0, 1, r.size(0) - 1).norm(2, {1}) - 1).abs().max().item<float>(), 1e-5f);
  const std::string path = testing_support::MakeTempDir("directions") + "/r.bin";
  ASSERT_TRUE(SaveDirections(path, r).ok());
  auto loaded = LoadDirections(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(at::equal(*loaded, r));
  std::string bytes = testing_support::ReadFile(path);
  bytes[100] ^= 0x40;
  auto corrupt = ParseDirections(bytes, "corrupt.bin");
  ASSERT_FALSE(corrupt.ok());
  EXPECT_NE(corrupt.status().message().find("checksum"), std::string::npos);
}

// numpy.quantile's default ("linear") method, written out: the value at position q·(n−1) of
// the sorted values, interpolated between its neighbours.
double NumpyQuantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos)), hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

TEST(RefusalDirections, WinsorizationClampsEachPromptAndLayerAtHereticsQuantile) {
  // Heretic 1.4 (model.get_residuals): per prompt and layer, |components| are clamped to their
  // q-quantile. Reference: every prompt's hidden states, clamped here by the formula, averaged.
  const Transformer& t = *Shared().model.transformer;
  const auto prompts = Prompts("harmful_train.txt", "[:6]");
  const double q = 0.95;
  const at::Tensor means = ResidualMeans(t, prompts, 2, 4, q);
  const ForwardOutput out = PromptForward(t, prompts, 2, /*capture_hidden_states=*/true);
  const at::Tensor states =
      at::stack(out.hidden_states, 1).to(at::kDouble).contiguous();  // (B, N+1, H)
  const int64_t B = states.size(0), L = states.size(1), H = states.size(2);
  at::Tensor reference = at::zeros({L, H}, at::kDouble);
  auto s = states.accessor<double, 3>();
  auto ref = reference.accessor<double, 2>();
  int64_t clamped = 0;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t l = 0; l < L; ++l) {
      std::vector<double> magnitudes(H);
      for (int64_t h = 0; h < H; ++h) magnitudes[h] = std::fabs(s[b][l][h]);
      const double limit = NumpyQuantile(magnitudes, q);
      for (int64_t h = 0; h < H; ++h) {
        const double x = s[b][l][h];
        clamped += std::fabs(x) > limit;
        ref[l][h] += std::clamp(x, -limit, limit) / static_cast<double>(B);
      }
    }
  }
  EXPECT_GT(clamped, B * L * H / 40) << "about 5% of components sit above the 0.95 quantile";
  // The batch of 4 + 2 prompts versus one batch of 6: only the padding layout differs.
  const double diff = (means - reference).abs().max().item<double>();
  std::printf("winsorized means vs the formula: max |diff| %.3g\n", diff);
  EXPECT_LT(diff, 3e-5);  // measured 1.3e-5
  const at::Tensor plain = ResidualMeans(t, prompts, 2, 4);
  EXPECT_GT((means - plain).abs().max().item<double>(), 1e-2)
      << "winsorization must change the means";
}

TEST(TrialEvaluator, CustomRefusalMarkersReplaceHereticsList) {
  const auto prompts = Prompts("harmful_test.txt", "[:8]");
  EvaluatorOptions options;
  options.max_response_length = 16;
  auto heretic = TrialEvaluator::Create(Shared().model, Shared().directions, prompts, {}, options);
  options.markers = {" the "};  // nearly every English response holds it; no Heretic marker does
  auto custom = TrialEvaluator::Create(Shared().model, Shared().directions, prompts, {}, options);
  ASSERT_TRUE(heretic.ok() && custom.ok());
  const auto responses = (*heretic)->Respond({}, prompts, /*early_stopping=*/false);
  int with_the = 0;
  for (const auto& r : responses) with_the += common::IsRefusal(r.text, {" the "});
  EXPECT_EQ((*custom)->Baseline().refusals, with_the);
  EXPECT_NE((*custom)->Baseline().refusals, (*heretic)->Baseline().refusals);
}

TEST(TrialEvaluator, BaselineRefusalsOnHarmfulTestArePinned) {
  // Measured on this model with Heretic's markers and default prompts: 5 of harmful_test[:100].
  auto evaluator = MakeEvaluator(Prompts("harmful_test.txt", "[:100]"), {});
  TrialScores baseline = evaluator->Baseline();
  EXPECT_EQ(baseline.refusal_prompts, 100);
  EXPECT_EQ(baseline.refusals, 5);
}

TEST(TrialEvaluator, EarlyStoppedAndFullLengthVerdictsAgree) {
  const auto prompts = Prompts("harmful_test.txt", "[:24]");
  auto evaluator = MakeEvaluator(prompts, {}, 60);
  for (const auto& trials : {std::vector<common::TrialParameters>{}, {Trial(1.2, 0.6, 20)}}) {
    auto early = evaluator->Respond(trials, prompts, true);
    auto full = evaluator->Respond(trials, prompts, false);
    ASSERT_EQ(early.size(), full.size());
    for (size_t i = 0; i < early.size(); ++i) {
      EXPECT_EQ(early[i].refusal, full[i].refusal) << full[i].text;
      EXPECT_EQ(full[i].text.rfind(early[i].text, 0), 0u) << "early text must be a prefix";
    }
  }
}

TEST(TrialEvaluator, FourTrialsInOneBatchEqualFourSeparateEvaluations) {
  auto evaluator =
      MakeEvaluator(Prompts("harmful_test.txt", "[:6]"), Prompts("harmless_test.txt", "[:6]"), 20);
  const std::vector<common::TrialParameters> trials = {
      Trial(1.5, 0.8, 20), Trial(0.9, 0.0, 24), Trial(1.2, 1.0, 18, false), Trial(1.4, 0.3, 26)};
  const auto together = evaluator->Evaluate(trials);
  for (size_t i = 0; i < trials.size(); ++i) {
    const TrialScores alone = evaluator->Evaluate({trials[i]})[0];
    EXPECT_EQ(together[i].refusals, alone.refusals) << i;
    EXPECT_NEAR(together[i].kl_divergence, alone.kl_divergence, 1e-5) << i;
    EXPECT_GT(alone.kl_divergence, 0.0) << i;
  }
}

TEST(TrialEvaluator, ZeroWeightTrialLeavesTheModelBitIdentical) {
  const auto prompts = Prompts("harmless_test.txt", "[:4]");
  auto evaluator = MakeEvaluator({}, prompts);
  const Transformer& t = *Shared().model.transformer;
  std::vector<TokenIds> rows(prompts);
  rows.insert(rows.end(), prompts.begin(), prompts.end());
  at::Tensor plain = PromptForward(t, rows, 2).last_logits;
  // Trial 0 touches nothing; trial 1 adapts layers, so trial 0's rows run through zero adapters
  // (same batch shape, so the base matmuls are the same computation).
  AdapterBatch adapters = evaluator->BuildAdapters({Trial(0.0, 0.0, 20), Trial(1.4, 0.8, 20)});
  adapters.row_trial = at::tensor(std::vector<int64_t>{0, 0, 0, 0, 1, 1, 1, 1}, at::kLong);
  at::Tensor mixed = PromptForward(t, rows, 2, false, &adapters).last_logits;
  EXPECT_TRUE(at::equal(mixed.narrow(0, 0, 4), plain.narrow(0, 0, 4)));
  EXPECT_FALSE(at::equal(mixed.narrow(0, 4, 4), plain.narrow(0, 4, 4)));
  // A trial that adapts no layer at all builds no adapters.
  AdapterBatch none = evaluator->BuildAdapters({Trial(0.0, 0.0, 20)});
  for (const auto& layer : none.o_proj) EXPECT_FALSE(layer.a.defined());
  EXPECT_EQ(evaluator->Evaluate({Trial(0.0, 0.0, 20)})[0].kl_divergence, 0.0);
}

TEST(TrialEvaluator, ContinuousBatchingSharedPrefixAndFrozenLayersGiveThePlainPathsResponses) {
  // The study's refusal pass: all 100 harmful_test prompts, k = 2 trials, 32-token responses,
  // 32 rows per batch. Plain path: static batches, every prompt prefilled whole through every
  // layer. The fast path also starts each prefill at its trial's first adapted layer (8 and 6).
  const auto prompts = Prompts("harmful_test.txt", "[:100]");
  const auto kl = Prompts("harmless_test.txt", "[:32]");
  const std::vector<common::TrialParameters> trials = {Trial(1.2, 0.6, 20), Trial(1.5, 1.0, 18)};
  auto plain = MakeEvaluator(prompts, kl, 32, RowNormalization::kFull, /*continuous=*/false,
                             /*share_prefix=*/false,
                             /*freeze=*/false);
  std::vector<TrialEvaluator::Response> expected, got;
  const auto expected_scores = plain->Evaluate(trials, &expected);
  ASSERT_EQ(expected.size(), 200u);
  int refusals = 0;
  for (const auto& r : expected) refusals += r.refusal;
  std::cout << "plain path: " << refusals << "/200 refusals over k = 2 trials\n";
  auto fast = MakeEvaluator(prompts, kl, 32, RowNormalization::kFull, true, true, true);
  const auto scores = fast->Evaluate(trials, &got);
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].refusal, expected[i].refusal) << "row " << i;
    EXPECT_EQ(got[i].text, expected[i].text) << "row " << i;
  }
  for (size_t t = 0; t < trials.size(); ++t) {
    EXPECT_EQ(scores[t].refusals, expected_scores[t].refusals) << t;
    EXPECT_NEAR(scores[t].kl_divergence, expected_scores[t].kl_divergence, 1e-6) << t;
  }
}

TEST(SharedPrefix, PrefilledHeadGivesTheSameLogitsAsWholePrompts) {
  const auto prompts = Prompts("harmless_test.txt", "[:16]");
  const Transformer& t = *Shared().model.transformer;
  const size_t length = CommonPrefixLength(prompts);
  // The chat template's head: <|im_start|>system\nYou are a helpful
  // assistant.<|im_end|>\n<|im_start|>user\n
  EXPECT_GE(length, 10u);
  for (const TokenIds& p : prompts) EXPECT_LT(length, p.size());
  auto evaluator = MakeEvaluator({}, prompts);
  AdapterBatch adapters = evaluator->BuildAdapters({Trial(1.2, 0.6, 20), Trial(1.5, 1.0, 18)});
  std::vector<TokenIds> rows(prompts);
  rows.insert(rows.end(), prompts.begin(), prompts.end());
  std::vector<int64_t> row_trial(16, 0);
  row_trial.resize(32, 1);
  adapters.row_trial = at::tensor(row_trial, at::kLong);
  const SharedPrefix prefix = PrefillSharedPrefix(t, prompts[0], length, 2, &adapters);
  const at::Tensor whole = PromptForward(t, rows, 2, false, &adapters).last_logits;
  const at::Tensor shared = PromptForward(t, rows, 2, false, &adapters, &prefix).last_logits;
  const float max_diff = (whole - shared).abs().max().item<float>();
  std::cout << "shared prefix of " << length << " tokens: max |dlogit| " << max_diff << "\n";
  EXPECT_LT(max_diff, 1e-4f);
  EXPECT_TRUE(at::equal(whole.argmax(-1), shared.argmax(-1)));
}

TEST(FrozenPrompts, PrefillFromTheFirstAdaptedLayerGivesTheWholeForwardsLogits) {
  const auto prompts = Prompts("harmless_test.txt", "[:16]");
  const Transformer& t = *Shared().model.transformer;
  const int N = t.config().num_layers;
  auto evaluator = MakeEvaluator({}, prompts);
  // Weight windows of 12 layers around layers 20 and 18 start at layers 8 and 6.
  AdapterBatch adapters = evaluator->BuildAdapters({Trial(1.2, 0.6, 20), Trial(1.5, 1.0, 18)});
  EXPECT_EQ(adapters.first_layer, (std::vector<int>{8, 6}));
  EXPECT_EQ(evaluator->BuildAdapters({Trial(0.0, 0.0, 20)}).first_layer, std::vector<int>{N});
  std::vector<TokenIds> rows(prompts);
  rows.insert(rows.end(), prompts.begin(), prompts.end());
  std::vector<int64_t> row_trial(16, 0);
  row_trial.resize(32, 1);
  adapters.row_trial = at::tensor(row_trial, at::kLong);
  const size_t length = CommonPrefixLength(prompts);
  const SharedPrefix prefix = PrefillSharedPrefix(t, prompts[0], length, 2, &adapters);
  const SharedPrefix base_prefix = PrefillSharedPrefix(t, prompts[0], length, 1, nullptr);
  FrozenRows frozen;
  for (int64_t r = 0; r < 32; ++r) frozen.source.push_back(r % 16);
  // Stored in batches of 5 (other shapes than the forwards below); a budget for every layer,
  // then for 3 layers, then for less than one.
  const int64_t all = int64_t{1} << 32;
  const FrozenPrompts full = FrozenPrompts::Build(t, prompts, length, 5, 2, all);
  EXPECT_EQ(full.depth(), N);
  const FrozenPrompts three =
      FrozenPrompts::Build(t, prompts, length, 5, 2, full.bytes() * 4 / (N + 1) / 1);
  const FrozenPrompts none = FrozenPrompts::Build(t, prompts, length, 5, 2, 1024);
  EXPECT_EQ(none.depth(), 0);
  const at::Tensor whole = PromptForward(t, rows, 2, false, &adapters, &prefix).last_logits;
  const at::Tensor base = PromptForward(t, prompts, 2, false, nullptr, &base_prefix).last_logits;
  for (const FrozenPrompts* states : {&full, &three}) {
    frozen.states = states;
    const at::Tensor got =
        PromptForward(t, rows, 2, false, &adapters, &prefix, &frozen).last_logits;
    const float max_diff = (whole - got).abs().max().item<float>();
    std::cout << "frozen depth " << states->depth() << " (" << states->bytes() / 1024
              << " KiB): max |dlogit| " << max_diff << "\n";
    EXPECT_LT(max_diff, 1e-4f);
    EXPECT_TRUE(at::equal(whole.argmax(-1), got.argmax(-1)));
    // The unmodified model starts as high as the states go (all the way up: only the final norm
    // and lm_head run).
    FrozenRows base_rows{states,
                         std::vector<int64_t>(frozen.source.begin(), frozen.source.begin() + 16)};
    const at::Tensor got_base =
        PromptForward(t, prompts, 2, false, nullptr, &base_prefix, &base_rows).last_logits;
    EXPECT_LT((base - got_base).abs().max().item<float>(), 1e-4f);
  }
  EXPECT_GE(three.depth(), 3);
  EXPECT_LT(three.depth(), N);
  // States stored after another prefix length are refused, not misread.
  const FrozenPrompts unshared = FrozenPrompts::Build(t, prompts, 0, 5, 2, all);
  frozen.states = &unshared;
  EXPECT_ANY_THROW(PromptForward(t, rows, 2, false, &adapters, &prefix, &frozen));
}

TEST(TrialEvaluator, AblationLowersRefusalProbabilityAndKeepsKlSmall) {
  // The baseline's refusing prompts, and the probability of the refusal's first token.
  const auto prompts = Prompts("harmful_test.txt", "[:100]");
  auto evaluator = MakeEvaluator(prompts, Prompts("harmless_test.txt", "[:20]"), 12);
  auto baseline = evaluator->Respond({}, prompts, true);
  std::vector<TokenIds> refusing, first_tokens;
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (!baseline[i].refusal) continue;
    refusing.push_back(prompts[i]);
    first_tokens.push_back(Shared().model.tokenizer->Encode(baseline[i].text));
  }
  ASSERT_GE(refusing.size(), 3u);
  const common::TrialParameters trial = Trial(1.5, 1.0, 18);
  const Transformer& t = *Shared().model.transformer;
  AdapterBatch adapters = evaluator->BuildAdapters({trial});
  adapters.row_trial = at::zeros({static_cast<int64_t>(refusing.size())}, at::kLong);
  auto before = at::softmax(PromptForward(t, refusing, 2).last_logits, -1);
  auto after = at::softmax(PromptForward(t, refusing, 2, false, &adapters).last_logits, -1);
  double p_before = 0, p_after = 0;
  for (size_t i = 0; i < refusing.size(); ++i) {
    p_before += before[i][first_tokens[i][0]].item<double>();
    p_after += after[i][first_tokens[i][0]].item<double>();
  }
  std::cout << "refusal first-token probability: " << p_before / refusing.size() << " -> "
            << p_after / refusing.size() << " over " << refusing.size() << " refusing prompts\n";
  EXPECT_LT(p_after, p_before);
  const TrialScores scores = evaluator->Evaluate({trial})[0];
  std::cout << "KL(baseline || ablated) on 20 harmless prompts: " << scores.kl_divergence << "\n";
  EXPECT_GT(scores.kl_divergence, 0.0);
  EXPECT_LT(scores.kl_divergence, 1.0);
}

// transformers' perplexity of a model folder on `texts` (token ids), from perplexity_oracle.py.
double OraclePerplexity(const std::string& hf_dir, const std::vector<TokenIds>& texts) {
  const std::string path = testing_support::MakeTempDir("perplexity_texts") + "/texts.json";
  std::ofstream(path) << nlohmann::json(texts).dump();
  std::string out;
  const int rc = testing_support::RunTorchOracle("perplexity_oracle.py", {hf_dir, path}, &out);
  EXPECT_EQ(rc, 0) << out;
  const auto j = nlohmann::json::parse(out.substr(out.rfind('{')), nullptr, false);
  EXPECT_TRUE(j.is_object()) << out;
  return j.is_object() ? j["perplexity"].get<double>() : 0;
}

TEST(Perplexity, EqualsTransformersOnTheUnmodifiedAndOnTheMergedTrialModel) {
  // Held-out harmless text as plain text (no chat template), cut at 48 tokens.
  auto lines = common::LoadPromptLines(common::DefaultDataDir() + "/harmless_test.txt", "[:8]");
  ASSERT_TRUE(lines.ok()) << lines.status();
  const auto& tokenizer = *Shared().model.tokenizer;
  std::vector<TokenIds> texts;
  for (const std::string& line : *lines) {
    TokenIds ids = tokenizer.Encode(line, tokenizer.spec().add_bos);
    if (ids.size() > 48) ids.resize(48);
    texts.push_back(ids);
  }
  auto evaluator =
      MakeEvaluator(Prompts("harmful_test.txt", "[:2]"), Prompts("harmless_test.txt", "[:2]"), 4);
  const common::TrialParameters trial = Trial(1.5, 1.0, 18);
  const double base = evaluator->Perplexities({}, texts)[0];
  // Two trials in one batch, the second the unmodified model's twin (zero weights): each row
  // takes its own trial's adapters.
  const std::vector<double> both = evaluator->Perplexities({trial, Trial(0, 0, 18)}, texts);

  std::string hf, log;
  ASSERT_EQ(testing_support::RunOracleOnce(
                "model_fixtures.py", {"hf-from-gguf", testing_support::RealModelPath(), "{OUT}"},
                &hf, &log),
            0)
      << log;
  auto source = OpenModelSource(testing_support::RealModelPath());
  ASSERT_TRUE(source.ok()) << source.status();
  MergeOptions merge;
  merge.dtype = formats::SafetensorsDtype::kF32;
  ExportTargets targets;
  targets.merged_folder = testing_support::MakeTempDir("perplexity_merged");
  auto written = WriteTrialExport(**source, Shared().directions, trial, merge, targets);
  ASSERT_TRUE(written.ok()) << written.status();

  const double oracle_base = OraclePerplexity(hf, texts);
  const double oracle_trial = OraclePerplexity(targets.merged_folder, texts);
  std::cout << std::setprecision(10) << "perplexity on 8 harmless_test texts: unmodified schism "
            << base << " transformers " << oracle_base << "; trial schism " << both[0]
            << " transformers " << oracle_trial << "; zero-weight twin " << both[1] << "\n";
  // Measured here (float32, CPU): 5.7e-7 and 9.7e-8 from transformers, 8.4e-7 between the twin
  // and the unmodified model (other batch rows, other summation order).
  EXPECT_NEAR(base / oracle_base, 1.0, 5e-6);
  EXPECT_NEAR(both[0] / oracle_trial, 1.0, 5e-6);
  EXPECT_NEAR(both[1] / base, 1.0, 5e-6);
  // The trial changes what the model predicts, by far more than the tolerance.
  EXPECT_GT(std::abs(both[0] / base - 1.0), 1e-2);
}

}  // namespace
}  // namespace schism::model
