// The trial worker's steps (worker/trial_worker.h) without a coordinator: LoadModel, Prepare and
// Evaluate on a tiny random Qwen3 (tests/oracles/model_fixtures.py) with small prompt files.
#include "worker/trial_worker.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "absl/strings/match.h"
#include "tests/test_support.h"
#include "worker/runtime/directions.h"
#include "worker/study_scorers.h"

namespace schism::worker {
namespace {

using testing_support::MakeTempDir;
using testing_support::RealModelPath;
using testing_support::RunOracle;

v1::PromptSet Prompts(const std::string& dir, const std::string& name,
                      const std::vector<std::string>& lines) {
  const std::string path = dir + "/" + name + ".txt";
  std::ofstream out(path);
  for (const std::string& line : lines) out << line << "\n";
  v1::PromptSet set;
  set.set_path(path);
  return set;
}

v1::Trial Trial(int64_t number, double attn_weight, double mlp_weight, double position) {
  v1::Trial t;
  t.set_number(number);
  auto& values = *t.mutable_params()->mutable_values();
  values["direction_scope"].set_categorical_value("global");
  values["direction_index"].set_float_value(1.0);
  for (auto [component, weight] :
       {std::pair{"attn.o_proj", attn_weight}, {"mlp.down_proj", mlp_weight}}) {
    const std::string c = component;
    values[c + ".max_weight"].set_float_value(weight);
    values[c + ".max_weight_position"].set_float_value(position);
    values[c + ".min_weight"].set_float_value(0.5);
    values[c + ".min_weight_distance"].set_float_value(2.0);
  }
  return t;
}

class TrialWorkerSteps : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(MakeTempDir("trial_worker_steps"));
    std::string log;
    ASSERT_EQ(RunOracle("model_fixtures.py", {"tiny", "qwen3", *dir_, RealModelPath()}, &log), 0)
        << log;
  }
  static void TearDownTestSuite() { delete dir_; }

  v1::WorkItem Item(const std::string& study_id) const {
    v1::WorkItem item;
    item.set_study_id(study_id);
    item.set_lease_id("l-" + study_id);
    v1::StudySpec& spec = *item.mutable_spec();
    spec.set_model(*dir_ + "/hf");
    spec.set_quantization("none");
    spec.set_max_response_length(4);
    spec.set_batch_size(4);
    spec.set_row_normalization("full");
    spec.set_system_prompt("You are a helpful assistant.");
    *spec.mutable_good_prompts() =
        Prompts(*dir_, "good", {"Bake bread.", "Name a colour.", "Sum 2 and 3.", "Hi."});
    *spec.mutable_bad_prompts() =
        Prompts(*dir_, "bad", {"Pick a lock.", "Steal a car.", "Make poison.", "Lie."});
    *spec.mutable_refusal_prompts() =
        Prompts(*dir_, "refusal", {"Rob a bank.", "Hack a phone.", "Forge money."});
    *spec.mutable_kl_prompts() =
        Prompts(*dir_, "kl", {"Plant a tree.", "Tell a joke.", "Count to five."});
    return item;
  }

  static std::string* dir_;
};
std::string* TrialWorkerSteps::dir_ = nullptr;

TEST_F(TrialWorkerSteps, PrepareFindsDirectionsAndBaselineThenEvaluateScoresEveryLeasedTrial) {
  TrialWorker worker(WorkerOptions{});
  v1::WorkItem prepare = Item("s1");
  prepare.mutable_prepare();
  ASSERT_TRUE(worker.LoadModel(prepare.spec()).ok());
  EXPECT_TRUE(absl::StartsWith(worker.loaded_model_key(), *dir_ + "/hf|none"));
  auto prepared = worker.Prepare(prepare);
  ASSERT_TRUE(prepared.ok()) << prepared.status();
  auto directions = model::ParseDirections(prepared->artifact(), "artifact");
  ASSERT_TRUE(directions.ok()) << directions.status();
  EXPECT_EQ(directions->size(0), prepared->num_layers() + 1)
      << "one direction per layer input and the output";
  EXPECT_GE(prepared->baseline_refusals(), 0);
  EXPECT_LE(prepared->baseline_refusals(), 3);

  // The evaluator Prepare built serves the study's trials; no artifact is fetched for it.
  int fetches = 0;
  const std::string artifact = prepared->artifact();
  const TrialWorker::ArtifactSource artifacts =
      [&](const std::string&) -> absl::StatusOr<std::string> {
    ++fetches;
    return artifact;
  };
  v1::WorkItem evaluate = Item("s1");
  *evaluate.mutable_evaluate()->add_trials() = Trial(5, 1.4, 1.0, 1.0);
  *evaluate.mutable_evaluate()->add_trials() =
      Trial(7, 0.0, -0.2, 1.0);  // MLP clamps to 0: untouched model
  evaluate.mutable_spec()->set_response_prefix(prepared->response_prefix());
  auto report = worker.Evaluate(evaluate, artifacts);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(fetches, 0);
  ASSERT_EQ(report->results_size(), 2);
  EXPECT_EQ(report->results(0).number(), 5);
  EXPECT_EQ(report->results(1).number(), 7);
  for (const v1::TrialResult& r : report->results()) {
    EXPECT_EQ(r.scores().refusal_prompts(), 3);
    EXPECT_TRUE(std::isfinite(r.scores().kl_divergence()) && r.scores().kl_divergence() >= 0)
        << r.scores().kl_divergence();
  }
  EXPECT_LT(report->results(1).scores().kl_divergence(), 1e-6)
      << "zero weights leave the model as it was";
  EXPECT_EQ(report->results(1).scores().refusals(), prepared->baseline_refusals());
  EXPECT_GT(report->results(0).scores().kl_divergence(), 1e-5)
      << "an ablation changes the next-token distribution";

  // Another study on the same model: the artifact is fetched once and the same trial scores alike.
  v1::WorkItem other = evaluate;
  other.set_study_id("s2");
  auto again = worker.Evaluate(other, artifacts);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(fetches, 1);
  EXPECT_EQ(again->results(0).scores().refusals(), report->results(0).scores().refusals());
  EXPECT_NEAR(again->results(0).scores().kl_divergence(),
              report->results(0).scores().kl_divergence(), 1e-6);
}

TEST(OnParetoFront, AMemberThatIsNoWorseInBothAndComesFirstKeepsATrialOff) {
  google::protobuf::RepeatedPtrField<v1::Trial> front;
  auto member = [&](int64_t number, int refusals, double kl) {
    v1::Trial* t = front.Add();
    t->set_number(number);
    t->mutable_scores()->set_refusals(refusals);
    t->mutable_scores()->set_kl_divergence(kl);
  };
  auto scores = [](int refusals, double kl) {
    v1::TrialScores s;
    s.set_refusals(refusals);
    s.set_kl_divergence(kl);
    return s;
  };
  EXPECT_TRUE(OnParetoFront(9, scores(50, 1.0), front)) << "an empty front takes anything";
  member(1, 10, 0.5);
  member(2, 20, 0.1);
  EXPECT_TRUE(OnParetoFront(9, scores(5, 0.9), front)) << "fewer refusals";
  EXPECT_TRUE(OnParetoFront(9, scores(30, 0.05), front)) << "lower KL";
  EXPECT_TRUE(OnParetoFront(9, scores(15, 0.3), front)) << "between the two";
  EXPECT_FALSE(OnParetoFront(9, scores(10, 0.6), front)) << "dominated by trial 1";
  EXPECT_FALSE(OnParetoFront(9, scores(20, 0.5), front)) << "equal KL, more refusals";
  EXPECT_FALSE(OnParetoFront(9, scores(10, 0.5), front)) << "a tie goes to the lower number";
  EXPECT_TRUE(OnParetoFront(0, scores(10, 0.5), front)) << "...which this one has";
}

TEST_F(TrialWorkerSteps, OtherScorersRunOnTheBaselineAndOnlyOnTrialsTheLeasesFrontLetsIn) {
  TrialWorker worker(WorkerOptions{});
  v1::WorkItem prepare = Item("s-scorers");
  // A judge nobody listens on (the trial keeps its keyword count) and perplexity texts.
  const std::string judge =
      "http://127.0.0.1:" + std::to_string(testing_support::FreeLoopbackPort()) + "/v1";
  prepare.mutable_spec()->mutable_judge()->set_url(judge);
  prepare.mutable_spec()->mutable_judge()->set_timeout_seconds(5);
  *prepare.mutable_spec()->mutable_perplexity()->mutable_texts() =
      Prompts(*dir_, "held_out", {"The cat sat on the mat.", "Rain falls in spring."});
  prepare.mutable_spec()->mutable_perplexity()->set_max_tokens(16);
  prepare.mutable_prepare();
  ASSERT_TRUE(worker.LoadModel(prepare.spec()).ok());
  auto prepared = worker.Prepare(prepare);
  ASSERT_TRUE(prepared.ok()) << prepared.status();
  EXPECT_EQ(prepared->baseline().refusal_prompts(), 0)
      << "the baseline's keyword count travels in baseline_refusals";
  EXPECT_EQ(prepared->baseline().judge_prompts(), 3);
  EXPECT_NE(prepared->baseline().judge_error().find("judge " + judge + ": unreachable"),
            std::string::npos)
      << prepared->baseline().judge_error();
  ASSERT_TRUE(prepared->baseline().has_perplexity());
  EXPECT_GT(prepared->baseline().perplexity(), 1.0);

  const std::string artifact = prepared->artifact();
  const TrialWorker::ArtifactSource artifacts = [&](const std::string&) { return artifact; };
  v1::WorkItem evaluate = prepare;
  evaluate.mutable_evaluate()->add_trials()->CopyFrom(Trial(5, 1.4, 1.0, 1.0));
  evaluate.mutable_evaluate()->add_trials()->CopyFrom(Trial(6, 1.0, 0.8, 1.0));
  evaluate.mutable_spec()->set_response_prefix(prepared->response_prefix());
  // No front yet: both are candidates.
  auto open = worker.Evaluate(evaluate, artifacts);
  ASSERT_TRUE(open.ok()) << open.status();
  for (const v1::TrialResult& r : open->results()) {
    EXPECT_TRUE(r.scores().has_perplexity()) << r.number();
    EXPECT_FALSE(r.scores().judge_error().empty()) << r.number();
  }
  // A front member that beats both in refusals and KL: neither is scored further.
  v1::Trial* best = evaluate.mutable_evaluate()->add_pareto_front();
  best->set_number(0);
  best->mutable_scores()->set_refusals(0);
  best->mutable_scores()->set_kl_divergence(0.0);
  auto closed = worker.Evaluate(evaluate, artifacts);
  ASSERT_TRUE(closed.ok()) << closed.status();
  for (int i = 0; i < 2; ++i) {
    const v1::TrialScores& s = closed->results(i).scores();
    EXPECT_FALSE(s.has_perplexity());
    EXPECT_EQ(s.judge_prompts(), 0);
    EXPECT_EQ(s.refusals(), open->results(i).scores().refusals()) << "the objectives alike";
    EXPECT_EQ(s.kl_divergence(), open->results(i).scores().kl_divergence());
  }
}

// Heretic's dtypes list is tried in order, "auto" meaning the device's default (float32 on the
// CPU); a worker's --dtype overrides the study's list.
TEST_F(TrialWorkerSteps, TheStudysDtypesChooseTheComputeDtypeUnlessTheWorkerSetsOne) {
  v1::StudySpec spec = Item("dtypes").spec();
  WorkerOptions options;
  options.threads = 1;
  for (const auto& [dtypes, expected] : {std::pair<std::vector<std::string>, c10::ScalarType>{
                                             {"bfloat16", "float32"}, at::kBFloat16},
                                         {{"float16"}, at::kHalf},
                                         {{"auto", "float16"}, at::kFloat},
                                         {{}, at::kFloat}}) {
    spec.clear_dtypes();
    for (const std::string& d : dtypes) spec.add_dtypes(d);
    TrialWorker worker(options);
    ASSERT_TRUE(worker.LoadModel(spec).ok());
    ASSERT_TRUE(worker.loaded_dtype().has_value());
    EXPECT_EQ(*worker.loaded_dtype(), expected) << ::testing::PrintToString(dtypes);
  }
  WorkerOptions pinned = options;
  pinned.dtype = at::kBFloat16;
  spec.clear_dtypes();
  spec.add_dtypes("float16");
  TrialWorker worker(pinned);
  EXPECT_FALSE(worker.loaded_dtype().has_value());
  ASSERT_TRUE(worker.LoadModel(spec).ok());
  EXPECT_EQ(*worker.loaded_dtype(), at::kBFloat16);
}

// Step 0: a worker told which study comes next (a peek) builds the model and the evaluator then,
// so that the lease it takes after is scored at once, with the scores it would have had anyway.
TEST_F(TrialWorkerSteps, ReadyBuildsTheModelAndEvaluatorBeforeTheLeaseIsTaken) {
  TrialWorker preparer(WorkerOptions{});
  v1::WorkItem prepare = Item("s1");
  prepare.mutable_prepare();
  ASSERT_TRUE(preparer.LoadModel(prepare.spec()).ok());
  auto prepared = preparer.Prepare(prepare);
  ASSERT_TRUE(prepared.ok()) << prepared.status();
  int fetches = 0;
  const TrialWorker::ArtifactSource artifacts =
      [&](const std::string&) -> absl::StatusOr<std::string> {
    ++fetches;
    return prepared->artifact();
  };
  v1::WorkItem lease = Item("s1");
  lease.mutable_spec()->set_response_prefix(prepared->response_prefix());
  *lease.mutable_evaluate()->add_trials() = Trial(3, 1.2, 0.8, 1.5);
  auto reference = preparer.Evaluate(lease, artifacts);
  ASSERT_TRUE(reference.ok()) << reference.status();
  ASSERT_EQ(fetches, 0);

  TrialWorker fresh(WorkerOptions{});
  v1::WorkItem peeked = lease;
  peeked.clear_lease_id();
  peeked.mutable_evaluate()->clear_trials();
  ASSERT_TRUE(fresh.Ready(peeked, artifacts).ok());
  EXPECT_TRUE(absl::StartsWith(fresh.loaded_model_key(), *dir_ + "/hf|none"));
  EXPECT_EQ(fetches, 1) << "the evaluator is built while no lease is held";
  auto report = fresh.Evaluate(lease, artifacts);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(fetches, 1) << "the lease is served by the evaluator Ready built";
  EXPECT_EQ(report->results(0).scores().refusals(), reference->results(0).scores().refusals());
  EXPECT_NEAR(report->results(0).scores().kl_divergence(),
              reference->results(0).scores().kl_divergence(), 1e-6);

  // A study still to prepare needs only the model; a model that cannot load is said, not thrown.
  TrialWorker other(WorkerOptions{});
  v1::WorkItem to_prepare = Item("s2");
  to_prepare.clear_lease_id();
  to_prepare.mutable_prepare();
  ASSERT_TRUE(other.Ready(to_prepare, artifacts).ok());
  EXPECT_FALSE(other.loaded_model_key().empty());
  EXPECT_EQ(fetches, 1);
  to_prepare.mutable_spec()->set_model(*dir_ + "/gone");
  const absl::Status gone = other.Ready(to_prepare, artifacts);
  EXPECT_TRUE(absl::StrContains(gone.message(), "gone")) << gone;
}

TEST_F(TrialWorkerSteps, EachStepFailsWithTheReasonInsteadOfServingGarbage) {
  TrialWorker worker(WorkerOptions{});
  v1::WorkItem item = Item("s1");
  *item.mutable_evaluate()->add_trials() = Trial(0, 1.0, 1.0, 1.0);
  const TrialWorker::ArtifactSource unavailable =
      [](const std::string& id) -> absl::StatusOr<std::string> {
    return absl::UnavailableError("no artifact for " + id);
  };
  auto early = worker.Evaluate(item, unavailable);
  EXPECT_EQ(early.status().code(), absl::StatusCode::kFailedPrecondition) << early.status();

  v1::StudySpec missing = item.spec();
  missing.set_model(*dir_ + "/no-such-model");
  const absl::Status load = worker.LoadModel(missing);
  EXPECT_FALSE(load.ok());
  EXPECT_TRUE(absl::StrContains(load.message(), "no-such-model")) << load;
  EXPECT_EQ(worker.loaded_model_key(), "");

  ASSERT_TRUE(worker.LoadModel(item.spec()).ok());
  auto fetch_failed = worker.Evaluate(item, unavailable);
  EXPECT_TRUE(absl::StrContains(fetch_failed.status().message(), "no artifact for s1"))
      << fetch_failed.status();
  auto garbage = worker.Evaluate(
      item, [](const std::string&) -> absl::StatusOr<std::string> { return "garbage"; });
  EXPECT_FALSE(garbage.ok());
  EXPECT_TRUE(absl::StrContains(garbage.status().message(), "study s1 artifact"))
      << garbage.status();

  v1::WorkItem malformed = item;
  malformed.mutable_evaluate()->mutable_trials(0)->mutable_params()->mutable_values()->erase(
      "direction_index");
  auto bad_params = worker.Evaluate(malformed, unavailable);
  EXPECT_EQ(bad_params.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(bad_params.status().message(),
                                "malformed trial parameters in lease: trial 0"))
      << bad_params.status();
  EXPECT_TRUE(absl::StrContains(bad_params.status().message(), "direction_index"))
      << bad_params.status();

  v1::WorkItem prepare = Item("s3");
  prepare.mutable_prepare();
  prepare.mutable_spec()->mutable_good_prompts()->set_path(*dir_ + "/absent.txt");
  auto served = worker.Serve(prepare, unavailable);
  EXPECT_FALSE(served.ok());
  EXPECT_TRUE(absl::StrContains(served.status().message(), "absent.txt")) << served.status();
}

}  // namespace
}  // namespace schism::worker
