// The coordinator's state machine against a real journal store on disk, with a test clock.
#include "coordinator/study_manager.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include <google/protobuf/util/message_differencer.h>

#include "coordinator/journal_store.h"
#include "tests/test_support.h"

namespace schism::coordinator {
namespace {

struct TestClock {
  Clock::time_point now = Clock::now();
  std::function<Clock::time_point()> fn() {
    return [this] { return now; };
  }
};

v1::StudySpec SmallSpec(int n_trials) {
  v1::StudySpec spec;
  spec.set_model("tiny.gguf");
  spec.set_n_trials(n_trials);
  spec.set_n_startup_trials(3);
  spec.set_lease_seconds(10);
  spec.set_max_attempts(2);
  spec.set_seed(5);
  return spec;
}

// Completes the Prepare lease of the study with a fake 4-layer artifact.
void Prepare(StudyManager& m, const std::string& worker) {
  v1::AcquireWorkRequest acquire;
  acquire.set_worker_id(worker);
  acquire.set_capacity(1);
  auto item = m.Acquire(acquire);
  ASSERT_TRUE(item.ok()) << item.status();
  ASSERT_TRUE(item->has_prepare());
  v1::ReportResultRequest report;
  report.set_worker_id(worker);
  report.set_lease_id(item->lease_id());
  report.set_artifact("directions");
  report.set_num_layers(4);
  report.set_baseline_refusals(7);
  ASSERT_TRUE(m.Report(report).ok());
}

v1::ReportResultRequest ScoresFor(const v1::WorkItem& item, const std::string& worker) {
  v1::ReportResultRequest report;
  report.set_worker_id(worker);
  report.set_lease_id(item.lease_id());
  for (const auto& t : item.evaluate().trials()) {
    auto* r = report.add_results();
    r->set_number(t.number());
    r->mutable_scores()->set_refusals(static_cast<int>(t.number() % 5));
    r->mutable_scores()->set_refusal_prompts(10);
    r->mutable_scores()->set_kl_divergence(0.01 * (t.number() + 1));
  }
  return report;
}

v1::AcquireWorkRequest Acquire(const std::string& worker, int capacity) {
  v1::AcquireWorkRequest a;
  a.set_worker_id(worker);
  a.set_capacity(capacity);
  return a;
}

// A study with its first trial COMPLETE, ready for export requests.
std::string StudyWithACompletedTrial(StudyManager& m, const std::string& w) {
  auto id = m.Submit(SmallSpec(2));
  EXPECT_TRUE(id.ok());
  Prepare(m, w);
  auto item = m.Acquire(Acquire(w, 1));
  EXPECT_TRUE(item.ok() && item->has_evaluate());
  EXPECT_TRUE(m.Report(ScoresFor(*item, w)).ok());
  return *id;
}

// An export of trial `trial` of `study` to `dest` (relative to the export worker's root).
v1::RequestExportRequest ExportRequest(const std::string& study, int64_t trial,
                                       const std::string& dest) {
  v1::RequestExportRequest request;
  request.set_study_id(study);
  request.set_trial(trial);
  request.set_dest(dest);
  return request;
}

v1::AcquireWorkRequest AcquireExport(const std::string& worker) {
  v1::AcquireWorkRequest a = Acquire(worker, 1);
  a.set_role(v1::WORKER_ROLE_EXPORT);
  return a;
}

TEST(StudyManager, ExportsGoOnlyToExportWorkersAreIdempotentAndSurviveARestart) {
  const std::string dir = testing_support::MakeTempDir("manager_export");
  JournalStore store(dir);
  TestClock clock;
  std::string study, export_id;
  {
    StudyManager m(&store, clock.fn());
    const std::string w = m.RegisterWorker({}), exporter = m.RegisterWorker({});
    study = StudyWithACompletedTrial(m, w);
    v1::RequestExportRequest request = ExportRequest(study, 0, "team/model");
    auto job = m.RequestExport(request);
    ASSERT_TRUE(job.ok()) << job.status();
    export_id = job->export_id();
    EXPECT_EQ(job->state(), v1::EXPORT_STATE_QUEUED);
    EXPECT_EQ(job->request().format(), "merged");           // defaults filled in
    EXPECT_EQ(job->request().source_model(), "tiny.gguf");  // the study's model
    EXPECT_EQ(m.RequestExport(request)->export_id(),
              export_id);  // the same request is the same export

    // Bad requests name what is wrong.
    auto bad = request;
    bad.set_dest("../escape");
    EXPECT_EQ(m.RequestExport(bad).status().code(), absl::StatusCode::kInvalidArgument);
    bad.set_dest("/abs");
    EXPECT_EQ(m.RequestExport(bad).status().code(), absl::StatusCode::kInvalidArgument);
    bad = request;
    bad.set_trial(1);  // asked but not complete
    EXPECT_EQ(m.RequestExport(bad).status().code(), absl::StatusCode::kFailedPrecondition);
    bad = request;
    bad.set_format("gguf");
    EXPECT_EQ(m.RequestExport(bad).status().code(), absl::StatusCode::kInvalidArgument);
    bad.set_study_id("nope");
    EXPECT_EQ(m.RequestExport(bad).status().code(), absl::StatusCode::kNotFound);

    // A trial worker gets trial work, never the export.
    auto trial_item = m.Acquire(Acquire(w, 1));
    ASSERT_TRUE(trial_item.ok());
    EXPECT_FALSE(trial_item->has_export_trial());
    // The export worker gets it with the trial's parameters and scores; its lease expires once.
    auto item = m.Acquire(AcquireExport(exporter));
    ASSERT_TRUE(item.ok() && item->has_export_trial());
    EXPECT_EQ(item->export_trial().trial().number(), 0);
    EXPECT_EQ(item->export_trial().trial().state(), v1::TRIAL_STATE_COMPLETE);
    EXPECT_EQ(item->export_trial().baseline_refusals(), 7);
    EXPECT_TRUE(m.Acquire(AcquireExport(exporter))->lease_id().empty());  // nothing else queued
    clock.now += std::chrono::seconds(11);
    EXPECT_EQ(m.GetExport(export_id)->state(), v1::EXPORT_STATE_QUEUED);
    v1::ReportResultRequest stale;
    stale.set_worker_id(exporter);
    stale.set_lease_id(item->lease_id());
    stale.set_export_destination("/exports/team/model");
    stale.add_export_files()->set_path("config.json");
    EXPECT_EQ(m.Report(stale).code(), absl::StatusCode::kFailedPrecondition);
    // The second lease reports; the repeat of that report changes nothing.
    auto again = m.Acquire(AcquireExport(exporter));
    ASSERT_TRUE(again->has_export_trial());
    EXPECT_EQ(again->export_trial().job().attempts(), 2);
    v1::ReportResultRequest empty;
    empty.set_worker_id(exporter);
    empty.set_lease_id(again->lease_id());
    EXPECT_EQ(m.Report(empty).code(), absl::StatusCode::kInvalidArgument);  // no files
    stale.set_lease_id(again->lease_id());
    ASSERT_TRUE(m.Report(stale).ok());
    ASSERT_TRUE(m.Report(stale).ok());
    EXPECT_EQ(m.GetExport(export_id)->state(), v1::EXPORT_STATE_DONE);
    EXPECT_EQ(m.GetExport(export_id)->files_size(), 1);

    // A permanent failure is not retried.
    request.set_dest("other");
    auto second = m.RequestExport(request);
    auto leased = m.Acquire(AcquireExport(exporter));
    v1::ReportFailureRequest failure;
    failure.set_worker_id(exporter);
    failure.set_lease_id(leased->lease_id());
    failure.set_reason("other exists and is not empty");
    failure.set_permanent(true);
    ASSERT_TRUE(m.ReportFailure(failure).ok());
    EXPECT_EQ(m.GetExport(second->export_id())->state(), v1::EXPORT_STATE_FAILED);
    EXPECT_EQ(m.GetExport(second->export_id())->error(), "other exists and is not empty");
    // A failed export can be requested again (a new export).
    EXPECT_NE(m.RequestExport(request)->export_id(), second->export_id());
  }
  StudyManager restarted(&store, clock.fn());
  ASSERT_TRUE(restarted.Recover().ok());
  auto done = restarted.GetExport(export_id);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->state(), v1::EXPORT_STATE_DONE);
  EXPECT_EQ(done->destination(), "/exports/team/model");
  // The queued one is still queued and can be leased by a new export worker.
  const std::string exporter = restarted.RegisterWorker({});
  auto item = restarted.Acquire(AcquireExport(exporter));
  ASSERT_TRUE(item.ok() && item->has_export_trial());
  EXPECT_EQ(item->export_trial().job().request().dest(), "other");
  EXPECT_EQ(item->export_trial().job().state(), v1::EXPORT_STATE_RUNNING);
}

TEST(StudyManager, RunsAStudyToExactlyNTrialsWithExpiredLeasesRequeued) {
  const std::string dir = testing_support::MakeTempDir("manager_run");
  JournalStore store(dir);
  TestClock clock;
  StudyManager m(&store, clock.fn());
  auto spec = SmallSpec(7);
  spec.set_trials_per_lease(3);
  auto id = m.Submit(spec);
  ASSERT_TRUE(id.ok()) << id.status();
  const std::string w = m.RegisterWorker({});
  Prepare(m, w);

  // A lease that dies: its 3 trials come back with the same parameters.
  auto lost = m.Acquire(Acquire(w, 3));
  ASSERT_TRUE(lost.ok());
  ASSERT_EQ(lost->evaluate().trials_size(), 3);
  clock.now += std::chrono::seconds(11);
  auto stale = m.Report(ScoresFor(*lost, w));
  EXPECT_EQ(stale.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(stale.message().find("expired"), std::string::npos) << stale;
  const std::string w2 =
      m.RegisterWorker({});  // (w itself is offered trials it has not lost first)
  auto again = m.Acquire(Acquire(w2, 3));
  ASSERT_TRUE(again.ok());
  ASSERT_EQ(again->evaluate().trials_size(), 3);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(again->evaluate().trials(i).number(), lost->evaluate().trials(i).number());
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(
        again->evaluate().trials(i).params(), lost->evaluate().trials(i).params()));
    EXPECT_EQ(again->evaluate().trials(i).attempts(), 2);
  }
  ASSERT_TRUE(m.Report(ScoresFor(*again, w2)).ok());
  EXPECT_TRUE(m.Report(ScoresFor(*again, w2)).ok()) << "a repeated report is idempotent";

  while (true) {
    auto item = m.Acquire(Acquire(w, 3));
    ASSERT_TRUE(item.ok());
    if (item->lease_id().empty()) break;
    ASSERT_TRUE(m.Report(ScoresFor(*item, w)).ok());
  }
  auto detail = m.Get(*id);
  ASSERT_TRUE(detail.ok());
  EXPECT_EQ(detail->summary().state(), v1::STUDY_STATE_FINISHED);
  EXPECT_EQ(detail->trials_size(), 7);
  EXPECT_EQ(detail->summary().completed_trials(), 7);
  EXPECT_EQ(detail->summary().baseline_refusals(), 7);
  for (int i = 0; i < 7; ++i) EXPECT_EQ(detail->trials(i).number(), i);
  EXPECT_FALSE(detail->pareto_front().empty());
}

// Lets the lease of `item` expire on the test clock.
void Expire(StudyManager& m, TestClock& clock) {
  clock.now += std::chrono::seconds(11);
  m.ExpireLeases();
}

v1::ReportFailureRequest FailureFor(const v1::WorkItem& item, const std::string& worker) {
  v1::ReportFailureRequest r;
  r.set_worker_id(worker);
  r.set_lease_id(item.lease_id());
  r.set_reason("CUDA error: out of memory");
  return r;
}

// A heartbeat moves the lease's deadline to lease_seconds after it (and says when that is): a
// trial lease and an export lease kept alive by heartbeats outlive their first deadline many times
// over and their reports are accepted; once the heartbeats stop, the lease expires lease_seconds
// after the last one, not before, and its work is re-queued.
TEST(StudyManager, HeartbeatsExtendALeaseUntilTheyStop) {
  JournalStore store(testing_support::MakeTempDir("manager_heartbeat"));
  TestClock clock;
  StudyManager m(&store, clock.fn());
  const std::string w = m.RegisterWorker({}), exporter = m.RegisterWorker({});
  const std::string study = StudyWithACompletedTrial(m, w);  // lease_seconds = 10
  auto item = m.Acquire(Acquire(w, 1));
  ASSERT_TRUE(item.ok() && item->has_evaluate()) << item.status();
  const auto wall_ms = [] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
  for (int beat = 1; beat <= 5; ++beat) {  // 5 x 8 s = 40 s: four times the lease
    clock.now += std::chrono::seconds(8);
    m.ExpireLeases();
    auto deadline = m.Heartbeat(w, item->lease_id());
    ASSERT_TRUE(deadline.ok()) << "beat " << beat << ": " << deadline.status();
    // The deadline in wall-clock time: lease_seconds from now (the test clock moved 8 s).
    EXPECT_NEAR(static_cast<double>(*deadline - wall_ms()), 10000.0, 1000.0) << "beat " << beat;
    EXPECT_EQ(m.Get(study)->trials(1).state(), v1::TRIAL_STATE_RUNNING);
  }
  clock.now += std::chrono::seconds(9);  // 9 s after the last beat: still alive
  m.ExpireLeases();
  EXPECT_EQ(m.Get(study)->trials(1).state(), v1::TRIAL_STATE_RUNNING);
  ASSERT_TRUE(m.Report(ScoresFor(*item, w)).ok());
  EXPECT_EQ(m.Get(study)->trials(1).state(), v1::TRIAL_STATE_COMPLETE);
  EXPECT_EQ(m.Get(study)->trials(1).attempts(), 1);

  // An export lease the same way; then the beats stop and it expires 10 s after the last one.
  auto job = m.RequestExport(ExportRequest(study, 1, "model"));
  ASSERT_TRUE(job.ok()) << job.status();
  auto exporting = m.Acquire(AcquireExport(exporter));
  ASSERT_TRUE(exporting.ok() && exporting->has_export_trial());
  for (int beat = 0; beat < 3; ++beat) {
    clock.now += std::chrono::seconds(8);
    m.ExpireLeases();
    ASSERT_TRUE(m.Heartbeat(exporter, exporting->lease_id()).ok()) << "beat " << beat;
    EXPECT_EQ(m.GetExport(job->export_id())->state(), v1::EXPORT_STATE_RUNNING);
  }
  clock.now += std::chrono::milliseconds(9999);
  m.ExpireLeases();
  EXPECT_EQ(m.GetExport(job->export_id())->state(), v1::EXPORT_STATE_RUNNING);
  clock.now += std::chrono::milliseconds(2);
  m.ExpireLeases();
  EXPECT_EQ(m.GetExport(job->export_id())->state(), v1::EXPORT_STATE_QUEUED);
  auto late = m.Heartbeat(exporter, exporting->lease_id());
  EXPECT_EQ(late.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(late.status().message().find("expired"), std::string::npos) << late.status();
  // Someone else's lease cannot be kept alive.
  auto next = m.Acquire(AcquireExport(exporter));
  ASSERT_TRUE(next.ok() && next->has_export_trial());
  EXPECT_EQ(m.Heartbeat(w, next->lease_id()).status().code(), absl::StatusCode::kPermissionDenied);
}

TEST(StudyManager, AWorkerThatVanishesIsNotTheTrialsFaultButAPoisonTrialFailsAndIsReplaced) {
  const std::string dir = testing_support::MakeTempDir("manager_poison");
  JournalStore store(dir);
  TestClock clock;
  StudyManager m(&store, clock.fn());
  auto id = m.Submit(SmallSpec(2));  // max_attempts = 2
  ASSERT_TRUE(id.ok());
  const std::string w1 = m.RegisterWorker({}), w2 = m.RegisterWorker({});
  Prepare(m, w1);
  auto first = m.Acquire(Acquire(w1, 1));
  ASSERT_EQ(first->evaluate().trials(0).number(), 0);
  Expire(m, clock);
  // w1 lost trial 0, so it is offered a new trial before that one.
  auto second = m.Acquire(Acquire(w1, 1));
  ASSERT_EQ(second->evaluate().trials(0).number(), 1);
  Expire(m, clock);
  // Nothing untried is left for w1: it gets trial 0 again, and losing it twice is still one worker.
  auto again = m.Acquire(Acquire(w1, 1));
  ASSERT_EQ(again->evaluate().trials(0).number(), 0);
  EXPECT_EQ(again->evaluate().trials(0).attempts(), 2);
  Expire(m, clock);
  EXPECT_EQ(m.Get(*id)->trials(0).state(), v1::TRIAL_STATE_WAITING);
  // A second, different worker dies on it too: two workers lost, a poison trial.
  auto item = m.Acquire(Acquire(w2, 1));
  ASSERT_EQ(item->evaluate().trials(0).number(), 0);
  Expire(m, clock);
  auto detail = m.Get(*id);
  EXPECT_EQ(detail->trials(0).state(), v1::TRIAL_STATE_FAILED);
  EXPECT_NE(detail->trials(0).error().find("outlived 2 workers"), std::string::npos)
      << detail->trials(0).error();
  // The failed trial is replaced: the study still ends with exactly 2 completed trials.
  while (true) {
    auto next = m.Acquire(Acquire(w2, 1));
    if (next->lease_id().empty()) break;
    EXPECT_NE(next->evaluate().trials(0).number(), 0);
    ASSERT_TRUE(m.Report(ScoresFor(*next, w2)).ok());
  }
  detail = m.Get(*id);
  EXPECT_EQ(detail->summary().state(), v1::STUDY_STATE_FINISHED);
  EXPECT_EQ(detail->summary().completed_trials(), 2);
  EXPECT_EQ(detail->summary().failed_trials(), 1);
  EXPECT_EQ(detail->trials_size(), 3);

  // A restarted coordinator reads the same accounting back.
  StudyManager restarted(&store, clock.fn());
  ASSERT_TRUE(restarted.Recover().ok());
  auto recovered = restarted.Get(*id);
  EXPECT_EQ(recovered->summary().state(), v1::STUDY_STATE_FINISHED);
  EXPECT_EQ(recovered->trials(0).state(), v1::TRIAL_STATE_FAILED);
  EXPECT_EQ(recovered->trials(0).error(), detail->trials(0).error());
}

// A worker that reports itself broken (a tensor-parallel rank died) returns its lease at once,
// counted as a lost worker: the same worker saying so twice leaves the trial waiting, where two
// reported failures would have failed it (max_attempts = 2).
TEST(StudyManager, AWorkerThatReportsItselfLostReturnsItsLeaseAsAnExpiryWould) {
  const std::string dir = testing_support::MakeTempDir("manager_lost");
  JournalStore store(dir);
  TestClock clock;
  StudyManager m(&store, clock.fn());
  auto id = m.Submit(SmallSpec(1));  // max_attempts = 2
  ASSERT_TRUE(id.ok());
  const std::string w1 = m.RegisterWorker({}), w2 = m.RegisterWorker({});
  Prepare(m, w1);
  for (int attempt = 1; attempt <= 2; ++attempt) {
    auto item = m.Acquire(Acquire(w1, 1));
    ASSERT_EQ(item->evaluate().trials(0).number(), 0);
    v1::ReportFailureRequest lost = FailureFor(*item, w1);
    lost.set_reason("tensor parallel: rank 0 lost the other ranks");
    lost.set_worker_lost(true);
    ASSERT_TRUE(m.ReportFailure(lost).ok());
    // No deadline passed: the lease came back at once.
    EXPECT_EQ(m.Get(*id)->trials(0).state(), v1::TRIAL_STATE_WAITING);
  }
  auto item = m.Acquire(Acquire(w2, 1));
  ASSERT_EQ(item->evaluate().trials(0).number(), 0);
  ASSERT_TRUE(m.Report(ScoresFor(*item, w2)).ok());
  EXPECT_EQ(m.Get(*id)->summary().state(), v1::STUDY_STATE_FINISHED);
  int expired = 0;
  size_t valid = 0;
  auto records = JournalStore::ReadJournal(dir + "/" + *id + "/journal.log", &valid);
  ASSERT_TRUE(records.ok());
  for (const std::string& r : *records) {
    expired += r.find("\"requeued\"") != std::string::npos &&
               r.find("\"cause\":\"expired\"") != std::string::npos &&
               r.find("worker lost: tensor parallel") != std::string::npos;
  }
  EXPECT_EQ(expired, 2);
}

TEST(StudyManager, ATrialLeasedThreeTimesMaxAttemptsWithoutAResultFails) {
  JournalStore store(testing_support::MakeTempDir("manager_cap"));
  TestClock clock;
  StudyManager m(&store, clock.fn());
  auto id = m.Submit(SmallSpec(1));  // max_attempts = 2: the cap is 6 leases
  const std::string w = m.RegisterWorker({});
  Prepare(m, w);
  for (int attempt = 1; attempt <= 6; ++attempt) {
    auto item = m.Acquire(Acquire(w, 1));  // one worker that keeps timing out (a suspended host)
    ASSERT_EQ(item->evaluate().trials(0).number(), 0);
    Expire(m, clock);
  }
  auto detail = m.Get(*id);
  EXPECT_EQ(detail->trials(0).state(), v1::TRIAL_STATE_FAILED);
  EXPECT_NE(detail->trials(0).error().find("leased 6 times"), std::string::npos)
      << detail->trials(0).error();
  EXPECT_EQ(m.Acquire(Acquire(w, 1))->evaluate().trials(0).number(), 1)
      << "replaced by a new trial";
}

TEST(StudyManager, ReportedFailuresFailATrialAcrossARestartAndTooManyFailTheStudy) {
  const std::string dir = testing_support::MakeTempDir("manager_fail");
  TestClock clock;
  std::string id;
  {
    JournalStore store(dir);
    StudyManager m(&store, clock.fn());
    auto spec = SmallSpec(4);
    spec.set_max_failed_trials(1);
    id = *m.Submit(spec);
    const std::string worker = m.RegisterWorker({});
    Prepare(m, worker);
    auto item = m.Acquire(Acquire(worker, 1));
    ASSERT_TRUE(m.ReportFailure(FailureFor(*item, worker)).ok());  // 1 of max_attempts = 2
  }
  JournalStore store(dir);
  StudyManager m(&store, clock.fn());
  ASSERT_TRUE(m.Recover().ok());
  const std::string worker = m.RegisterWorker({});
  auto item = m.Acquire(Acquire(worker, 1));
  ASSERT_EQ(item->evaluate().trials(0).number(), 0);
  ASSERT_TRUE(m.ReportFailure(FailureFor(*item, worker)).ok());  // the second: FAILED
  auto detail = m.Get(id);
  EXPECT_EQ(detail->trials(0).state(), v1::TRIAL_STATE_FAILED);
  EXPECT_NE(detail->trials(0).error().find("2 workers reported a failure"), std::string::npos)
      << detail->trials(0).error();
  EXPECT_EQ(detail->summary().state(), v1::STUDY_STATE_RUNNING)
      << "1 failed trial is within max_failed_trials";
  // One worker failing the replacement again and again is that worker's trouble: it is offered
  // new trials first, and its repeats count once.
  auto replacement = m.Acquire(Acquire(worker, 1));
  ASSERT_EQ(replacement->evaluate().trials(0).number(), 1);
  ASSERT_TRUE(m.ReportFailure(FailureFor(*replacement, worker)).ok());
  auto fresh = m.Acquire(Acquire(worker, 1));
  ASSERT_EQ(fresh->evaluate().trials(0).number(), 2) << "a trial it has not failed first";
  ASSERT_TRUE(m.Report(ScoresFor(*fresh, worker)).ok());
  EXPECT_EQ(m.Get(id)->trials(1).state(), v1::TRIAL_STATE_WAITING);
  // A second worker fails it too: 2 failed trials > max_failed_trials = 1 fails the study.
  const std::string other = m.RegisterWorker({});
  auto next = m.Acquire(Acquire(other, 1));
  ASSERT_EQ(next->evaluate().trials(0).number(), 1);
  ASSERT_TRUE(m.ReportFailure(FailureFor(*next, other)).ok());
  detail = m.Get(id);
  EXPECT_EQ(detail->summary().state(), v1::STUDY_STATE_FAILED);
  EXPECT_NE(detail->summary().error().find("2 trials failed, more than max_failed_trials = 1"),
            std::string::npos)
      << detail->summary().error();
  EXPECT_NE(detail->summary().error().find("out of memory"), std::string::npos)
      << detail->summary().error();
  EXPECT_TRUE(m.Acquire(Acquire(worker, 1))->lease_id().empty())
      << "a failed study hands out no more work";
  StudyManager restarted(&store, clock.fn());
  ASSERT_TRUE(restarted.Recover().ok());
  EXPECT_EQ(restarted.Get(id)->summary().error(), detail->summary().error());
}

// A prepared study of `n_trials` leased two at a time; *worker is the worker that prepared it.
std::string PreparedStudyOfPairs(StudyManager& m, int n_trials, std::string* worker) {
  auto spec = SmallSpec(n_trials);
  spec.set_trials_per_lease(2);
  const std::string id = *m.Submit(spec);
  *worker = m.RegisterWorker({});
  Prepare(m, *worker);
  return id;
}

// How many records of a study's journal under `dir` contain `needle`.
int CountJournalRecords(const std::string& dir, const std::string& id, const std::string& needle) {
  size_t valid = 0;
  const auto records = JournalStore::ReadJournal(dir + "/" + id + "/journal.log", &valid);
  EXPECT_TRUE(records.ok()) << records.status();
  int n = 0;
  for (const std::string& r : records.ok() ? *records : std::vector<std::string>{})
    n += r.find(needle) != std::string::npos;
  return n;
}

TEST(StudyManager, ALeaseOutDuringARestartExpiresIfItsWorkerIsGone) {
  const std::string dir = testing_support::MakeTempDir("manager_lease_restart");
  TestClock clock;
  std::string id, old_worker;
  v1::WorkItem lost;
  {
    JournalStore store(dir);
    StudyManager m(&store, clock.fn());
    id = PreparedStudyOfPairs(m, 3, &old_worker);
    lost = *m.Acquire(Acquire(old_worker, 2));
    ASSERT_EQ(lost.evaluate().trials_size(), 2);
  }
  JournalStore store(dir);
  StudyManager m(&store, clock.fn());
  ASSERT_TRUE(m.Recover().ok());
  EXPECT_EQ(m.Get(id)->summary().running_trials(), 2);
  EXPECT_EQ(m.Metrics().active_leases, 1);
  const std::string w = m.RegisterWorker({});
  auto next = m.Acquire(Acquire(w, 2));
  ASSERT_EQ(next->evaluate().trials_size(), 1) << "only the third trial is free";
  EXPECT_EQ(next->evaluate().trials(0).number(), 2);
  clock.now += std::chrono::seconds(11);  // lease_seconds after the restart, no heartbeat
  m.ExpireLeases();
  auto detail = m.Get(id);
  EXPECT_EQ(detail->trials(0).state(), v1::TRIAL_STATE_WAITING);
  EXPECT_EQ(detail->trials(1).state(), v1::TRIAL_STATE_WAITING);
  auto stale = m.Report(ScoresFor(lost, old_worker));
  EXPECT_EQ(stale.code(), absl::StatusCode::kFailedPrecondition) << stale;
  EXPECT_NE(stale.message().find("expired"), std::string::npos) << stale;
  // A restart is nobody's fault: the expiry is journaled as such and counts against no worker.
  EXPECT_EQ(CountJournalRecords(dir, id, "\"cause\":\"restart\""), 2);
}

TEST(StudyManager,
     RestoredLeasesAreReleasedAtOnceForAnEmbeddedRunAndAHalfJournaledReportCompletesOnce) {
  const std::string dir = testing_support::MakeTempDir("manager_release");
  TestClock clock;
  std::string id, old_worker;
  v1::WorkItem out, cut;
  {
    JournalStore store(dir);
    StudyManager m(&store, clock.fn());
    id = PreparedStudyOfPairs(m, 4, &old_worker);
    out = *m.Acquire(Acquire(old_worker, 2));
    cut = *m.Acquire(Acquire(old_worker, 2));
    ASSERT_EQ(cut.evaluate().trials_size(), 2);
    // The coordinator died after journaling the first of cut's two completions.
    const auto& t = cut.evaluate().trials(0);
    ASSERT_TRUE(store
                    .Append(id, "{\"type\":\"completed\",\"number\":" + std::to_string(t.number()) +
                                    ",\"refusals\":1,\"refusal_prompts\":10,\"kl_divergence\":0.5}")
                    .ok());
  }
  JournalStore store(dir);
  StudyManager m(&store, clock.fn());
  ASSERT_TRUE(m.Recover().ok());
  EXPECT_EQ(m.Get(id)->summary().completed_trials(), 1);
  // The worker's retry of the whole report lands; the trial already journaled keeps its scores.
  ASSERT_TRUE(m.Report(ScoresFor(cut, old_worker)).ok());
  auto detail = m.Get(id);
  EXPECT_EQ(detail->summary().completed_trials(), 2);
  EXPECT_EQ(
      detail->trials(static_cast<int>(cut.evaluate().trials(0).number())).scores().kl_divergence(),
      0.5);
  m.ReleaseRestoredLeases();  // `schism run`: `out`'s worker died with the old process
  for (const auto& t : out.evaluate().trials()) {
    EXPECT_EQ(m.Get(id)->trials(static_cast<int>(t.number())).state(), v1::TRIAL_STATE_WAITING);
  }
  EXPECT_EQ(CountJournalRecords(dir, id, "\"completed\""), 2)
      << "each trial completed exactly once";
}

TEST(StudyManager, MalformedJournalRecordsAreDataLossNamingTheStudyNotACrash) {
  for (
      const std::string& record :
      {std::string(
           R"({"type":"completed","number":99,"refusals":1,"refusal_prompts":2,"kl_divergence":0.1})"),
       std::string(R"({"type":"asked","number":"zero","params":{}})"),
       std::string(R"({"type":7})")}) {
    const std::string dir = testing_support::MakeTempDir("manager_malformed");
    std::string id;
    {
      JournalStore store(dir);
      StudyManager m(&store);
      id = *m.Submit(SmallSpec(2));
      ASSERT_TRUE(store.Append(id, record).ok());
    }
    JournalStore store(dir);
    StudyManager m(&store);
    const absl::Status s = m.Recover();
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << record << ": " << s;
    EXPECT_NE(s.message().find(id), std::string::npos) << s;
    EXPECT_NE(s.message().find("journal record 1"), std::string::npos)
        << "the record after `submitted`: " << s;
  }
}

TEST(StudyManager, ListingsPageAndAcceptedSpecsFitWhatCanBeServed) {
  JournalStore store(testing_support::MakeTempDir("manager_pages"));
  StudyManager m(&store);
  // Twelve large (200 KiB) specs and three small ones: a page stops at its byte budget (2 MiB)
  // or at page_size, whichever comes first.
  std::vector<std::string> ids;
  for (int i = 0; i < 15; ++i) {
    auto spec = SmallSpec(2);
    if (i < 12) spec.set_system_prompt(std::string(200 << 10, 'x'));
    ids.push_back(*m.Submit(spec));
  }
  auto walk = [&](int page_size, std::vector<int>* sizes) {
    v1::ListStudiesRequest request;
    request.set_page_size(page_size);
    std::vector<std::string> seen;
    do {
      auto page = m.ListPage(request);
      EXPECT_TRUE(page.ok()) << page.status();
      EXPECT_LE(page->ByteSizeLong(), size_t{2} << 20);
      sizes->push_back(page->studies_size());
      for (const auto& s : page->studies()) seen.push_back(s.study_id());
      request.set_page_token(page->next_page_token());
    } while (!request.page_token().empty());
    return seen;
  };
  std::vector<int> by_bytes, by_size;
  EXPECT_EQ(walk(0, &by_bytes), ids) << "every study once, in submission order";
  EXPECT_EQ(by_bytes, (std::vector<int>{10, 5}));
  EXPECT_EQ(walk(4, &by_size), ids);
  EXPECT_EQ(by_size, (std::vector<int>{4, 4, 4, 3}));
  v1::ListStudiesRequest request;
  request.set_page_token("banana");
  EXPECT_EQ(m.ListPage(request).status().code(), absl::StatusCode::kInvalidArgument);
  // A spec that could never travel in a work item is refused at submission, naming why.
  auto huge = SmallSpec(2);
  huge.set_system_prompt(std::string(300 << 10, 'x'));
  auto refused = m.Submit(huge);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("more than 262144"), std::string::npos)
      << refused.status();
}

// A spec submitted over gRPC leaves unset what it does not name: orthogonalize_direction then
// takes Heretic's default (true) as it does from a TOML config, and an explicit false stays.
TEST(StudyManager, AnUnsetOrthogonalizeDirectionIsHereticsDefaultAndFalseStaysFalse) {
  JournalStore store(testing_support::MakeTempDir("manager_orthogonalize"));
  StudyManager m(&store);
  const std::string unset = *m.Submit(SmallSpec(2));
  auto off = SmallSpec(2);
  off.set_orthogonalize_direction(false);
  const std::string explicit_off = *m.Submit(off);
  EXPECT_TRUE(m.Get(unset)->summary().spec().orthogonalize_direction());
  EXPECT_FALSE(m.Get(explicit_off)->summary().spec().orthogonalize_direction());
  StudyManager recovered(&store);
  ASSERT_TRUE(recovered.Recover().ok());
  EXPECT_TRUE(recovered.Get(unset)->summary().spec().orthogonalize_direction());
  EXPECT_FALSE(recovered.Get(explicit_off)->summary().spec().orthogonalize_direction());
}

// A response prefix the study sets, even "", is the study's: the preparing worker's detected one
// is taken only when the spec has none (Heretic detects only when response_prefix is None).
TEST(StudyManager, ADetectedResponsePrefixFillsOnlyAnUnsetOne) {
  // One study per store: the prepare lease of each, reported with a detected "Sure,".
  auto prepared_spec = [](const std::string& name, std::optional<std::string> prefix) {
    const std::string dir = testing_support::MakeTempDir(name);
    v1::StudySpec recovered_spec;
    {
      JournalStore store(dir);
      StudyManager m(&store);
      const std::string w = m.RegisterWorker({});
      auto spec = SmallSpec(2);
      if (prefix) spec.set_response_prefix(*prefix);
      const std::string id = *m.Submit(spec);
      auto item = m.Acquire(Acquire(w, 1));
      EXPECT_TRUE(item.ok() && item->has_prepare()) << item.status();
      v1::ReportResultRequest report;
      report.set_worker_id(w);
      report.set_lease_id(item->lease_id());
      report.set_artifact("directions");
      report.set_num_layers(4);
      report.set_response_prefix("Sure,");
      EXPECT_TRUE(m.Report(report).ok());
    }
    JournalStore store(dir);
    StudyManager recovered(&store);
    EXPECT_TRUE(recovered.Recover().ok());
    return recovered.List().at(0).spec();
  };
  EXPECT_EQ(prepared_spec("prefix_unset", std::nullopt).response_prefix(), "Sure,");
  const v1::StudySpec explicit_empty = prepared_spec("prefix_empty", "");
  EXPECT_TRUE(explicit_empty.has_response_prefix());
  EXPECT_EQ(explicit_empty.response_prefix(), "") << "the study's own \"\" is kept";
  EXPECT_EQ(prepared_spec("prefix_given", "Well,").response_prefix(), "Well,");
}

// A peek names the study whose work a worker would get, so that the worker loads what it needs
// before it takes a lease: it leases nothing, asks the sampler nothing, journals nothing.
TEST(StudyManager, APeekNamesTheNextWorkWithoutLeasingAskingOrJournalingAnything) {
  const std::string dir = testing_support::MakeTempDir("manager_peek");
  JournalStore store(dir);
  StudyManager m(&store);
  const std::string w = m.RegisterWorker({});
  auto peek = [&](v1::WorkerRole role = v1::WORKER_ROLE_TRIALS) {
    v1::AcquireWorkRequest request = Acquire(w, 2);
    request.set_peek(true);
    request.set_role(role);
    auto item = m.Acquire(request);
    EXPECT_TRUE(item.ok()) << item.status();
    EXPECT_TRUE(item->lease_id().empty());
    return *item;
  };
  auto records = [&] {
    auto all = store.ReplayAll();
    size_t n = 0;
    for (const auto& [id, lines] : *all) n += lines.size();
    return n;
  };
  EXPECT_TRUE(peek().study_id().empty()) << "no study, nothing to name";
  auto spec = SmallSpec(3);
  spec.set_model("peeked.gguf");
  const std::string id = *m.Submit(spec);
  const size_t submitted = records();

  const v1::WorkItem first = peek();
  EXPECT_EQ(first.study_id(), id);
  EXPECT_EQ(first.spec().model(), "peeked.gguf");
  EXPECT_TRUE(first.has_prepare());
  EXPECT_EQ(peek().study_id(), id) << "peeking twice changes nothing";
  EXPECT_EQ(m.Get(id)->summary().state(), v1::STUDY_STATE_QUEUED);
  EXPECT_EQ(m.Metrics().active_leases, 0);
  EXPECT_EQ(records(), submitted);
  EXPECT_TRUE(peek(v1::WORKER_ROLE_EXPORT).study_id().empty()) << "export workers do not peek";

  Prepare(m, w);  // the prepare lease is taken and reported: the study runs
  const v1::WorkItem running = peek();
  EXPECT_EQ(running.study_id(), id);
  EXPECT_TRUE(running.has_evaluate());
  EXPECT_EQ(running.evaluate().trials_size(), 0);
  EXPECT_EQ(m.Get(id)->trials_size(), 0) << "a peek asks the sampler nothing";
  const size_t prepared = records();
  peek();
  EXPECT_EQ(records(), prepared);

  // Once every trial is asked and leased there is nothing to name.
  for (int i = 0; i < 3; ++i) {
    auto lease = m.Acquire(Acquire(w, 1));
    ASSERT_TRUE(lease.ok()) << lease.status();
    ASSERT_EQ(lease->evaluate().trials_size(), 1);
  }
  EXPECT_EQ(m.Get(id)->trials_size(), 3);
  EXPECT_TRUE(peek().study_id().empty()) << "every trial leased: nothing to name";
}

TEST(StudyManager, AJournalCutAfterTheLastCompletionRecoversAsFinished) {
  const std::string dir = testing_support::MakeTempDir("manager_cut");
  std::string id;
  {
    JournalStore store(dir);
    StudyManager m(&store);
    id = *m.Submit(SmallSpec(2));
    const std::string w = m.RegisterWorker({});
    Prepare(m, w);
    for (int i = 0; i < 2; ++i) ASSERT_TRUE(m.Report(ScoresFor(*m.Acquire(Acquire(w, 1)), w)).ok());
    ASSERT_EQ(m.Get(id)->summary().state(), v1::STUDY_STATE_FINISHED);
  }
  // Cut the journal just before its `finished` record, as a crash between the two appends would.
  const std::string journal = dir + "/" + id + "/journal.log";
  size_t valid = 0;
  auto records = JournalStore::ReadJournal(journal, &valid);
  ASSERT_TRUE(records.ok());
  ASSERT_NE(records->back().find("\"finished\""), std::string::npos);
  std::filesystem::resize_file(journal,
                               valid - records->back().size() - 8);  // 8: the record header
  ASSERT_EQ(JournalStore::ReadJournal(journal, &valid)->size(), records->size() - 1);
  JournalStore store(dir);
  StudyManager m(&store);
  ASSERT_TRUE(m.Recover().ok());
  auto detail = m.Get(id);
  EXPECT_EQ(detail->summary().state(), v1::STUDY_STATE_FINISHED);
  EXPECT_EQ(detail->summary().completed_trials(), 2);
  // ... and says so in the journal, so the next recovery reads it directly.
  EXPECT_NE(JournalStore::ReadJournal(journal, &valid)->back().find("\"finished\""),
            std::string::npos);
}

TEST(StudyManager, InvalidReportsAreRefusedSpecifically) {
  JournalStore store(testing_support::MakeTempDir("manager_bad"));
  TestClock clock;
  StudyManager m(&store, clock.fn());
  ASSERT_TRUE(m.Submit(SmallSpec(4)).ok());
  const std::string w = m.RegisterWorker({}), other = m.RegisterWorker({});
  Prepare(m, w);
  auto item = m.Acquire(Acquire(w, 1));
  auto report = ScoresFor(*item, w);
  report.mutable_results(0)->mutable_scores()->set_kl_divergence(std::nan(""));
  auto nan = m.Report(report);
  EXPECT_EQ(nan.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(nan.message().find("invalid scores"), std::string::npos) << nan;
  // The NaN report re-queued the trial; it comes back with attempt 2 (to a worker that has not
  // failed it).
  auto retry = m.Acquire(Acquire(other, 1));
  EXPECT_EQ(retry->evaluate().trials(0).number(), item->evaluate().trials(0).number());
  EXPECT_EQ(retry->evaluate().trials(0).attempts(), 2);
  EXPECT_EQ(m.Report(ScoresFor(*retry, w)).code(), absl::StatusCode::kPermissionDenied);
  v1::ReportResultRequest unknown = ScoresFor(*retry, other);
  unknown.set_lease_id("l-nope");
  EXPECT_EQ(m.Report(unknown).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(m.Acquire(Acquire("w-unregistered", 1)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  v1::StudySpec bad = SmallSpec(4);
  bad.set_row_normalization("sideways");
  auto rejected = m.Submit(bad);
  EXPECT_NE(rejected.status().message().find("row_normalization"), std::string::npos);
}

TEST(StudyManager, OtherScorersGetTheFrontInLeasesTheirScoresCheckedKeptAndRecovered) {
  const std::string dir = testing_support::MakeTempDir("manager_scorers");
  std::string id;
  int64_t completed = -1;
  {
    JournalStore store(dir);
    StudyManager m(&store);
    v1::StudySpec spec = SmallSpec(4);
    spec.mutable_perplexity()->mutable_texts()->set_path("held_out.txt");
    id = *m.Submit(spec);
    const std::string w = m.RegisterWorker({});
    auto prepare = m.Acquire(Acquire(w, 1));
    ASSERT_TRUE(prepare.ok() && prepare->has_prepare());
    v1::ReportResultRequest prepared;
    prepared.set_worker_id(w);
    prepared.set_lease_id(prepare->lease_id());
    prepared.set_artifact("directions");
    prepared.set_num_layers(4);
    prepared.set_baseline_refusals(7);
    prepared.mutable_baseline()->set_perplexity(0.5);  // below 1: impossible
    EXPECT_EQ(m.Report(prepared).code(), absl::StatusCode::kInvalidArgument);
    prepared.mutable_baseline()->set_perplexity(11.5);
    ASSERT_TRUE(m.Report(prepared).ok());

    auto first = m.Acquire(Acquire(w, 1));
    ASSERT_TRUE(first.ok() && first->has_evaluate());
    EXPECT_EQ(first->evaluate().pareto_front_size(), 0) << "nothing completed yet";
    auto report = ScoresFor(*first, w);
    report.mutable_results(0)->mutable_scores()->set_judge_prompts(10);
    report.mutable_results(0)->mutable_scores()->set_judge_refusals(11);
    auto too_many = m.Report(report);
    EXPECT_EQ(too_many.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(too_many.message().find("judge refusals 11"), std::string::npos) << too_many;
    // Re-queued; the next worker's report, with a perplexity and a judge error, is kept.
    const std::string w2 = m.RegisterWorker({});
    auto retry = m.Acquire(Acquire(w2, 1));
    ASSERT_TRUE(retry.ok() && retry->has_evaluate());
    report = ScoresFor(*retry, w2);
    completed = retry->evaluate().trials(0).number();
    report.mutable_results(0)->mutable_scores()->set_perplexity(13.25);
    report.mutable_results(0)->mutable_scores()->set_judge_prompts(10);
    report.mutable_results(0)->mutable_scores()->set_judge_error("judge http://h/v1: HTTP 500");
    ASSERT_TRUE(m.Report(report).ok());
    auto next = m.Acquire(Acquire(w2, 1));
    ASSERT_TRUE(next.ok() && next->has_evaluate());
    ASSERT_EQ(next->evaluate().pareto_front_size(), 1) << "the front as it stands";
    EXPECT_EQ(next->evaluate().pareto_front(0).number(), completed);
    EXPECT_EQ(next->evaluate().pareto_front(0).scores().kl_divergence(),
              report.results(0).scores().kl_divergence());
  }
  JournalStore store(dir);
  StudyManager m(&store);
  ASSERT_TRUE(m.Recover().ok());
  auto detail = m.Get(id);
  ASSERT_TRUE(detail.ok()) << detail.status();
  EXPECT_EQ(detail->summary().baseline().perplexity(), 11.5);
  const v1::TrialScores& s = detail->trials(static_cast<int>(completed)).scores();
  EXPECT_EQ(s.perplexity(), 13.25);
  EXPECT_EQ(s.judge_error(), "judge http://h/v1: HTTP 500");
  EXPECT_FALSE(s.has_judge_refusals());
}

TEST(StudyManager, LeasesOfAStudyWithoutOtherScorersCarryNoFront) {
  JournalStore store(testing_support::MakeTempDir("manager_no_front"));
  StudyManager m(&store);
  ASSERT_TRUE(m.Submit(SmallSpec(4)).ok());
  const std::string w = m.RegisterWorker({});
  Prepare(m, w);
  for (int i = 0; i < 2; ++i) {
    auto item = m.Acquire(Acquire(w, 1));
    ASSERT_TRUE(item.ok() && item->has_evaluate());
    EXPECT_EQ(item->evaluate().pareto_front_size(), 0);
    ASSERT_TRUE(m.Report(ScoresFor(*item, w)).ok());
  }
}

TEST(StudyManager, RecoversFromTheJournalIncludingATornTail) {
  const std::string dir = testing_support::MakeTempDir("manager_recover");
  std::string id, old_worker;
  std::vector<v1::TrialParams> params_before;
  absl::StatusOr<v1::WorkItem> running;
  {
    JournalStore store(dir);
    StudyManager m(&store);
    id = *m.Submit(SmallSpec(6));
    const std::string w = m.RegisterWorker({});
    old_worker = w;
    Prepare(m, w);
    for (int i = 0; i < 3; ++i) {
      auto item = m.Acquire(Acquire(w, 1));
      ASSERT_TRUE(m.Report(ScoresFor(*item, w)).ok());
    }
    running = m.Acquire(Acquire(w, 1));  // out when the coordinator dies
    auto detail = m.Get(id);
    for (const auto& t : detail->trials()) params_before.push_back(t.params());
  }
  // A crash mid-append leaves half a record at the end of the journal.
  std::ofstream(dir + "/" + id + "/journal.log", std::ios::app | std::ios::binary)
      << std::string("\x40\x00\x00\x00\x01\x02", 6);
  JournalStore store(dir);
  StudyManager m(&store);
  ASSERT_TRUE(m.Recover().ok());
  auto detail = m.Get(id);
  ASSERT_TRUE(detail.ok());
  EXPECT_EQ(detail->summary().state(), v1::STUDY_STATE_RUNNING);
  EXPECT_EQ(detail->summary().completed_trials(), 3);
  ASSERT_EQ(detail->trials_size(), 4);
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(detail->trials(i).params(),
                                                                   params_before[i]))
        << i;
  }
  // The lease that was out survived the restart: its worker reports under its old id.
  EXPECT_EQ(detail->trials(3).state(), v1::TRIAL_STATE_RUNNING);
  EXPECT_EQ(detail->trials(3).attempts(), 1);
  EXPECT_TRUE(m.Heartbeat(old_worker, running->lease_id()).ok());
  ASSERT_TRUE(m.Report(ScoresFor(*running, old_worker)).ok());
  const std::string w = m.RegisterWorker({});
  while (true) {
    auto item = m.Acquire(Acquire(w, 2));
    if (item->lease_id().empty()) break;
    ASSERT_TRUE(m.Report(ScoresFor(*item, w)).ok());
  }
  detail = m.Get(id);
  EXPECT_EQ(detail->summary().state(), v1::STUDY_STATE_FINISHED);
  EXPECT_EQ(detail->summary().completed_trials(), 6);
  EXPECT_EQ(detail->trials_size(), 6);
  size_t valid = 0;
  auto records = JournalStore::ReadJournal(dir + "/" + id + "/journal.log", &valid);
  EXPECT_EQ(valid, std::filesystem::file_size(dir + "/" + id + "/journal.log"));
}

// Threads calling the manager directly (no gRPC frames in their stacks, so scripts/tsan checks
// every access the manager makes): 6 workers acquiring, heartbeating and reporting while 2 threads
// submit, cancel, list, fetch, read metrics and request exports, and the leases of a worker that
// vanished expire (their trials re-queued). Every trial completes exactly once.
TEST(StudyManager, RacingThreadsCompleteEveryTrialExactlyOnce) {
  JournalStore store(testing_support::MakeTempDir("racing"));
  StudyManager m(&store);
  constexpr int kStudies = 2, kTrials = 10, kWorkers = 6;
  std::vector<std::string> ids;
  for (int s = 0; s < kStudies; ++s) {
    v1::StudySpec spec = SmallSpec(kTrials);
    spec.set_lease_seconds(1);
    spec.set_max_attempts(10);
    auto id = m.Submit(spec);
    ASSERT_TRUE(id.ok()) << id.status();
    ids.push_back(*id);
  }
  // A worker that prepares the first study, takes three of its trials and vanishes: the lease
  // expires during the race and the trials are re-queued.
  const std::string vanished = m.RegisterWorker(v1::RegisterRequest());
  int abandoned = 0;
  Prepare(m, vanished);
  auto taken = m.Acquire(Acquire(vanished, 3));
  ASSERT_TRUE(taken.ok() && taken->has_evaluate()) << taken.status();
  abandoned = taken->evaluate().trials_size();
  std::atomic<bool> done{false};
  std::mutex accepted_mu;
  std::map<std::pair<std::string, int64_t>, int> accepted;
  std::vector<std::thread> threads;
  for (int w = 0; w < kWorkers; ++w) {
    threads.emplace_back([&, w] {
      const std::string worker = m.RegisterWorker(v1::RegisterRequest());
      while (!done) {
        auto item = m.Acquire(Acquire(worker, 1 + w % 3));
        if (!item.ok() || item->lease_id().empty()) {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
          continue;
        }
        EXPECT_TRUE(m.Heartbeat(worker, item->lease_id()).ok());
        v1::ReportResultRequest report = ScoresFor(*item, worker);
        if (item->has_prepare()) {
          report.set_artifact("directions");
          report.set_num_layers(4);
          report.set_baseline_refusals(7);
        }
        if (!m.Report(report).ok()) continue;
        // Only the two studies' trials: the submitter's short-lived extra studies may get some too.
        if (std::find(ids.begin(), ids.end(), item->study_id()) == ids.end()) continue;
        std::lock_guard<std::mutex> lock(accepted_mu);
        for (const auto& t : item->evaluate().trials()) ++accepted[{item->study_id(), t.number()}];
      }
    });
  }
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      while (!done) {
        if (r == 0) {
          auto extra = m.Submit(SmallSpec(1));
          EXPECT_TRUE(extra.ok());
          if (extra.ok()) EXPECT_TRUE(m.Cancel(*extra).ok());
        }
        EXPECT_FALSE(m.List().empty());
        for (const std::string& id : ids) {
          auto detail = m.Get(id);
          EXPECT_TRUE(detail.ok());
          for (const auto& t : detail->trials()) {
            if (t.state() != v1::TRIAL_STATE_COMPLETE) continue;
            // A repeat of the same request is the same export: fine.
            (void)m.RequestExport(
                ExportRequest(id, t.number(), "racing-" + id + "-" + std::to_string(t.number())));
            break;
          }
        }
        (void)m.Metrics();
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    });
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  auto finished = [&] {
    for (const std::string& id : ids) {
      auto detail = m.Get(id);
      if (!detail.ok() || detail->summary().state() != v1::STUDY_STATE_FINISHED) return false;
    }
    return true;
  };
  while (!finished() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  done = true;
  for (std::thread& t : threads) t.join();
  int duplicates = 0;
  for (const auto& [trial, reports] : accepted) duplicates += reports - 1;
  std::printf(
      "racing threads: asked %d, accepted unique %zu, duplicates %d, re-queued by expiry %d\n",
      kStudies * kTrials, accepted.size(), duplicates, abandoned);
  EXPECT_EQ(accepted.size(), static_cast<size_t>(kStudies * kTrials));
  EXPECT_EQ(duplicates, 0);
  for (const std::string& id : ids) {
    auto detail = m.Get(id);
    ASSERT_TRUE(detail.ok());
    EXPECT_EQ(detail->summary().state(), v1::STUDY_STATE_FINISHED);
    EXPECT_EQ(detail->summary().completed_trials(), kTrials);
  }
}

}  // namespace
}  // namespace schism::coordinator
