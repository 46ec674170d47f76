// Tensor parallelism over Gloo, as two real processes on 127.0.0.1: this test binary starts a
// second copy of itself as rank 1 (SCHISM_TP_TEST_RANK=1), both load their shard of a tiny random
// model, and rank 0 compares what the pair computes with the whole model in one process.
#include <ATen/ATen.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "common/env.h"
#include "common/prompt_set.h"
#include "common/trial_parameters.h"
#include "tests/test_support.h"
#include "worker/runtime/directions.h"
#include "worker/runtime/generator.h"
#include "worker/runtime/model_loader.h"
#include "worker/runtime/tensor_parallel.h"
#include "worker/runtime/trial_evaluator.h"

extern char** environ;

namespace schism::model {
namespace {

constexpr char kRankVariable[] = "SCHISM_TP_TEST_RANK";
constexpr char kPortVariable[] = "SCHISM_TP_TEST_PORT";
constexpr char kDirVariable[] = "SCHISM_TP_TEST_DIR";

// What a test compares: last-position logits of a prompt batch, greedy continuations, and (for
// the evaluated variants) two trials' scores with every row normalization.
struct Outcome {
  at::Tensor logits;
  std::vector<TokenIds> greedy;
  std::vector<TrialScores> scores;
};

std::vector<TokenIds> DatasetPrompts(const LoadedModel& model, const std::string& file, int n) {
  auto lines = common::LoadPromptLines(common::DefaultDataDir() + "/" + file,
                                       "[:" + std::to_string(n) + "]");
  EXPECT_TRUE(lines.ok()) << lines.status();
  return *EncodeChatPrompts(model, *lines, "You are a helpful assistant.", "");
}

common::TrialParameters Trial(double attn, double mlp, double position) {
  common::TrialParameters p;
  p.global_direction = false;
  p.direction_index = 1.5;
  p.components[common::kAttentionComponent] = {attn, position, 0.5, 2.0};
  p.components[common::kMlpComponent] = {mlp, position, 0.5, 2.0};
  return p;
}

// The same calls on every rank (and on the whole model): each collective meets its peers.
Outcome RunWorkload(const LoadedModel& model, bool evaluate) {
  Outcome out;
  const std::vector<TokenIds> prompts = DatasetPrompts(model, "harmful_test.txt", 4);
  out.logits = PromptForward(*model.transformer, prompts, 0).last_logits;
  GreedyOptions greedy;
  greedy.max_new_tokens = 8;
  out.greedy = GreedyGenerate(*model.transformer, prompts, greedy);
  if (!evaluate) return out;
  const auto good = DatasetPrompts(model, "harmless_train.txt", 8);
  const auto bad = DatasetPrompts(model, "harmful_train.txt", 8);
  const at::Tensor directions = RefusalDirections(ResidualMeans(*model.transformer, good, 0, 8),
                                                  ResidualMeans(*model.transformer, bad, 0, 8),
                                                  /*orthogonalize=*/true);
  for (RowNormalization mode :
       {RowNormalization::kNone, RowNormalization::kPre, RowNormalization::kFull}) {
    EvaluatorOptions options;
    options.max_response_length = 12;
    options.batch_size = 4;
    options.row_normalization = mode;
    auto evaluator =
        TrialEvaluator::Create(model, directions, DatasetPrompts(model, "harmful_test.txt", 6),
                               DatasetPrompts(model, "harmless_test.txt", 4), options);
    EXPECT_TRUE(evaluator.ok()) << evaluator.status();
    for (const TrialScores& s :
         (*evaluator)->Evaluate({Trial(1.2, 0.8, 1.0), Trial(0.6, 1.4, 2.0)}))
      out.scores.push_back(s);
  }
  return out;
}

const std::vector<std::string> kVariants = {"llama3", "qwen2", "qwen3moe", "phi3", "gemma3"};
bool Evaluated(const std::string& variant) { return variant == "llama3" || variant == "qwen3moe"; }

absl::StatusOr<LoadedModel> LoadShard(const std::string& path,
                                      std::shared_ptr<TensorParallel> group) {
  LoadOptions options;
  options.tensor_parallel = std::move(group);
  return LoadModel(path, options);
}

// Rank 1: the fixtures rank 0 made, the same workloads, nothing asserted but that it could.
int RunRankOne() {
  TensorParallelOptions options;
  options.world_size = 2;
  options.rank = 1;
  options.master_port = std::atoi(std::getenv(kPortVariable));
  auto group = TensorParallel::Connect(options, c10::Device(c10::kCPU));
  if (!group.ok()) {
    std::cerr << group.status() << "\n";
    return 1;
  }
  const std::string dir = std::getenv(kDirVariable);
  for (const std::string& variant : kVariants) {
    auto model = LoadShard(dir + "/" + variant + "/hf", *group);
    if (!model.ok()) {
      std::cerr << model.status() << "\n";
      return 1;
    }
    RunWorkload(*model, Evaluated(variant));
  }
  return 0;
}

class RankOne {
 public:
  RankOne(int port, const std::string& dir) {
    const std::string self = "/proc/self/exe";
    std::vector<std::string> args = {
        "runtime_tests", "--gtest_filter=TensorParallel.TwoGlooProcessesMatchOneProcess"};
    std::vector<std::string> env = {std::string(kRankVariable) + "=1",
                                    std::string(kPortVariable) + "=" + std::to_string(port),
                                    std::string(kDirVariable) + "=" + dir};
    for (char** e = environ; *e != nullptr; ++e) env.push_back(*e);
    std::vector<char*> argv, envp;
    for (auto& a : args) argv.push_back(a.data());
    for (auto& e : env) envp.push_back(e.data());
    argv.push_back(nullptr);
    envp.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    log_ = dir + "/rank1.log";
    posix_spawn_file_actions_addopen(&actions, 1, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    posix_spawn(&pid_, self.c_str(), &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
  }
  ~RankOne() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  int Wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  const std::string& log() const { return log_; }

 private:
  pid_t pid_ = -1;
  std::string log_;
};

TEST(TensorParallel, TwoGlooProcessesMatchOneProcess) {
  if (std::getenv(kRankVariable) != nullptr) {
    ASSERT_EQ(RunRankOne(), 0);
    return;
  }
  const std::string dir = testing_support::MakeTempDir("tensor_parallel");
  for (const std::string& variant : kVariants) {
    std::string log;
    ASSERT_EQ(testing_support::RunOracle(
                  "model_fixtures.py",
                  {"tiny", variant, dir + "/" + variant, testing_support::RealModelPath()}, &log),
              0)
        << log;
  }
  const int port = testing_support::FreeLoopbackPort();
  RankOne rank_one(port, dir);
  TensorParallelOptions options;
  options.world_size = 2;
  options.master_port = port;
  auto group = TensorParallel::Connect(options, c10::Device(c10::kCPU));
  ASSERT_TRUE(group.ok()) << group.status();
  EXPECT_STREQ((*group)->backend_name(), "gloo");
  for (const std::string& variant : kVariants) {
    SCOPED_TRACE(variant);
    const std::string path = dir + "/" + variant + "/hf";
    auto shard = LoadShard(path, *group);
    ASSERT_TRUE(shard.ok()) << shard.status();
    const Outcome parallel = RunWorkload(*shard, Evaluated(variant));
    auto whole = LoadModel(path);
    ASSERT_TRUE(whole.ok()) << whole.status();
    const Outcome single = RunWorkload(*whole, Evaluated(variant));
    // Each rank holds half of every head-split and row-split weight.
    const auto& layer = shard->transformer->weights().layers[0];
    EXPECT_EQ(layer.o_proj.weight.size(1) * 2,
              whole->transformer->weights().layers[0].o_proj.weight.size(1));
    // float32 sums over the halves of each row, then over the ranks, instead of over whole rows:
    // the logits agree to float32 rounding of the largest logit (measured: at most 1.6e-6 of it).
    const float delta = (parallel.logits - single.logits).abs().max().item<float>();
    const float scale = single.logits.abs().max().item<float>();
    std::cout << variant << ": max |logit(2 ranks) - logit(1 process)| = " << delta << " (of "
              << scale << ", " << delta / scale << ")\n";
    EXPECT_LT(delta, 3e-6f * scale);
    EXPECT_EQ(parallel.greedy, single.greedy);
    ASSERT_EQ(parallel.scores.size(), single.scores.size());
    for (size_t i = 0; i < single.scores.size(); ++i) {
      EXPECT_EQ(parallel.scores[i].refusals, single.scores[i].refusals) << i;
      // KL sums log-probability differences of those logits (measured: |Δ| at most 4.3e-6 here,
      // 1.0e-6 in the cluster test's study).
      EXPECT_NEAR(parallel.scores[i].kl_divergence, single.scores[i].kl_divergence, 1e-5) << i;
      std::cout << variant << " trial " << i << ": KL " << parallel.scores[i].kl_divergence
                << " vs " << single.scores[i].kl_divergence << ", refusals "
                << parallel.scores[i].refusals << "\n";
    }
  }
  EXPECT_EQ(rank_one.Wait(), 0) << testing_support::ReadFile(rank_one.log());
}

// A model whose heads cannot be split evenly is refused by name before anything is loaded.
TEST(TensorParallel, UnevenHeadsAreRefusedByName) {
  ModelConfig c;
  c.num_layers = 2;
  c.num_heads = 9;
  c.num_kv_heads = 3;
  c.intermediate_size = 1536;
  const absl::Status s = CheckTensorParallel(c, 2);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("attention heads 9"), std::string::npos) << s;
  EXPECT_NE(s.message().find("key/value heads 3"), std::string::npos) << s;
  EXPECT_TRUE(CheckTensorParallel(c, 3).ok());
}

}  // namespace
}  // namespace schism::model
