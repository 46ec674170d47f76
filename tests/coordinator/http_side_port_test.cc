// The HTTP side port over real loopback HTTP (cpp-httplib client): probes, Prometheus metrics,
// the token on /api, and the embedded dashboard and Chart.js.
#include "coordinator/http_side_port.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>

#include "coordinator/journal_store.h"
#include "tests/test_support.h"

namespace schism::coordinator {
namespace {

TEST(HttpSidePort, ServesProbesMetricsApiAndDashboardWithEveryScore) {
  JournalStore store(testing_support::MakeTempDir("http_side_port"));
  StudyManager manager(&store);
  v1::StudySpec spec;
  spec.set_model("tiny.gguf");
  spec.set_n_trials(3);
  spec.set_name("nightly");
  auto id = manager.Submit(spec);
  ASSERT_TRUE(id.ok()) << id.status();
  manager.RegisterWorker({});

  auto side = HttpSidePort::Start(&manager, "127.0.0.1:0", "tok");
  ASSERT_TRUE(side.ok()) << side.status();
  httplib::Client client("127.0.0.1", (*side)->port());
  auto health = client.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(client.Get("/readyz")->status, 503);
  (*side)->SetReady(true);
  EXPECT_EQ(client.Get("/readyz")->status, 200);

  auto metrics = client.Get("/metrics");
  ASSERT_EQ(metrics->status, 200);
  EXPECT_NE(metrics->body.find("# TYPE schism_studies gauge"), std::string::npos) << metrics->body;
  EXPECT_NE(metrics->body.find("schism_studies{state=\"queued\"} 1\n"), std::string::npos)
      << metrics->body;
  EXPECT_NE(metrics->body.find("schism_studies{state=\"running\"} 0\n"), std::string::npos)
      << metrics->body;
  EXPECT_NE(metrics->body.find("schism_exports{state=\"done\"} 0\n"), std::string::npos)
      << metrics->body;
  EXPECT_NE(metrics->body.find("schism_workers_registered 1\n"), std::string::npos)
      << metrics->body;

  EXPECT_EQ(client.Get("/api/studies")->status, 401);
  EXPECT_EQ(client.Get("/api/studies", {{"Authorization", "Bearer wrong"}})->status, 401);
  const httplib::Headers auth = {{"Authorization", "Bearer tok"}};
  auto list = client.Get("/api/studies", auth);
  ASSERT_EQ(list->status, 200);
  const auto studies = nlohmann::json::parse(list->body)["studies"];
  ASSERT_EQ(studies.size(), 1u);
  EXPECT_EQ(studies[0]["study_id"], *id);
  EXPECT_EQ(studies[0]["spec"]["name"], "nightly");
  auto detail = client.Get("/api/studies/" + *id, auth);
  ASSERT_EQ(detail->status, 200);
  EXPECT_EQ(nlohmann::json::parse(detail->body)["summary"]["state"], "STUDY_STATE_QUEUED");
  EXPECT_EQ(client.Get("/api/studies/nope", auth)->status, 404);

  auto page = client.Get("/");
  ASSERT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("<canvas id=\"plot\">"), std::string::npos);
  EXPECT_NE(page->body.find("api/studies"), std::string::npos);
  auto chart = client.Get("/chart.js");
  ASSERT_EQ(chart->status, 200);
  EXPECT_NE(chart->body.find("Chart.js v3"), std::string::npos);
  EXPECT_GT(chart->body.size(), 100000u);

  // A trial scored by the judge and the perplexity scorer: the API the dashboard draws its table
  // from carries both, and the table has their columns.
  const std::string worker = manager.RegisterWorker({});
  v1::AcquireWorkRequest acquire;
  acquire.set_worker_id(worker);
  acquire.set_capacity(1);
  auto prepare = manager.Acquire(acquire);
  ASSERT_TRUE(prepare.ok() && prepare->has_prepare()) << prepare.status();
  v1::ReportResultRequest prepared;
  prepared.set_worker_id(worker);
  prepared.set_lease_id(prepare->lease_id());
  prepared.set_artifact("directions");
  prepared.set_num_layers(4);
  prepared.set_baseline_refusals(7);
  ASSERT_TRUE(manager.Report(prepared).ok());
  auto trial = manager.Acquire(acquire);
  ASSERT_TRUE(trial.ok() && trial->has_evaluate()) << trial.status();
  v1::ReportResultRequest scored;
  scored.set_worker_id(worker);
  scored.set_lease_id(trial->lease_id());
  v1::TrialResult* result = scored.add_results();
  result->set_number(trial->evaluate().trials(0).number());
  result->mutable_scores()->set_refusals(3);
  result->mutable_scores()->set_refusal_prompts(10);
  result->mutable_scores()->set_kl_divergence(0.25);
  result->mutable_scores()->set_judge_refusals(2);
  result->mutable_scores()->set_judge_prompts(10);
  result->mutable_scores()->set_perplexity(12.5);
  ASSERT_TRUE(manager.Report(scored).ok());
  const auto trials =
      nlohmann::json::parse(client.Get("/api/studies/" + *id, auth)->body)["trials"];
  ASSERT_EQ(trials.size(), 1u) << trials;
  EXPECT_EQ(trials[0]["scores"]["judge_refusals"], 2) << trials;
  EXPECT_EQ(trials[0]["scores"]["judge_prompts"], 10) << trials;
  EXPECT_EQ(trials[0]["scores"]["perplexity"], 12.5) << trials;
  EXPECT_NE(page->body.find("<th>judge</th><th>perplexity</th>"), std::string::npos);
  EXPECT_NE(page->body.find("sc.judge_refusals + '/' + sc.judge_prompts"), std::string::npos);

  EXPECT_FALSE(HttpSidePort::Start(&manager, "127.0.0.1", "").ok());
}

}  // namespace
}  // namespace schism::coordinator
