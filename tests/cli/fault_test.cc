// Fault tests of the job system (issue #16): real processes on loopback, killed with SIGKILL as a
// crash would, and exact trial accounting read from the store itself afterwards. Each prints its
// counts: asked / completed / unique / duplicates / requeued / failed.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "coordinator/redis_store.h"
#include "tests/cli/cluster_harness.h"
#include "tests/redis_server.h"
#include "tests/test_support.h"

namespace {

using namespace schism::cluster_test;  // NOLINT: the harness is this file's vocabulary

// The records of a study as Redis itself holds them.
std::vector<nlohmann::json> RedisRecords(const std::string& url, const std::string& study) {
  std::vector<nlohmann::json> out;
  auto store = schism::coordinator::RedisStore::Connect(url);
  if (!store.ok()) return out;
  auto all = (*store)->ReplayAll();
  if (!all.ok() || !all->count(study)) return out;
  for (const auto& r : all->at(study)) out.push_back(nlohmann::json::parse(r));
  return out;
}

// 20 SIGKILLs of randomly chosen workers among 3 (each replaced at once) during a 40-trial study
// with 2 s leases: every trial completes exactly once, and a lease lost with its worker is
// re-queued without counting against the trial (none fails, whatever it went through).
TEST(Faults, KillStormOfTwentyWorkerKillsCompletesEveryTrialOnce) {
  Cluster c = MakeCluster("fault_storm", 2, /*trials=*/40);
  Process coordinator(CoordinatorArgs(c), c.log);
  const std::string study = Submit(c);
  std::vector<std::unique_ptr<Process>> workers;
  for (int i = 0; i < 3; ++i) workers.push_back(std::make_unique<Process>(WorkerArgs(c), c.log));
  std::mt19937 rng(16);
  auto leases = [&] {
    int n = 0;
    for (const nlohmann::json& r : Records(c, study)) n += r.value("type", "") == "leased";
    return n;
  };
  int kills = 0, seen = 0;
  while (kills < 20 && !Finished(c, study)) {
    // Each kill follows a lease taken since the previous one (waiting at most 3 s), so kills land
    // while trials run and not only on replacements still loading their model: with kills at a
    // fixed 0.1-0.4 s pace, a run where none hit a lease holder happened once trials got faster.
    WaitFor([&] { return leases() > seen || Finished(c, study); }, 3);
    seen = leases();
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 50));
    const size_t victim = rng() % workers.size();
    workers[victim]->Kill(SIGKILL);
    ++kills;
    workers[victim] = std::make_unique<Process>(WorkerArgs(c), c.log);
  }
  EXPECT_EQ(kills, 20) << "the study ended before the storm did: make it longer";
  ASSERT_TRUE(WaitFor([&] { return Finished(c, study); }, 600))
      << schism::testing_support::ReadFile(c.log);
  const Accounting a = Account(Records(c, study));
  Print("kill storm (20 SIGKILLs, 3 workers, 40 trials)", a);
  ExpectExactly(a, 40);
  EXPECT_GE(a.requeued, 1) << "no kill hit a worker holding a lease";
}

// The coordinator SIGKILLed five times during a study and restarted on its journal each time: the
// study finishes with every trial once.
TEST(Faults, CoordinatorKilledFiveTimesMidStudyLosesNothing) {
  Cluster c = MakeCluster("fault_coordinator", 4);
  auto coordinator = std::make_unique<Process>(CoordinatorArgs(c), c.log);
  const std::string study = Submit(c);
  Process w1(WorkerArgs(c), c.log), w2(WorkerArgs(c), c.log);
  int kills = 0;
  for (int target = 2; target <= 10; target += 2) {
    if (!WaitFor([&] { return Count(Records(c, study), "completed") >= target; }, 240)) break;
    coordinator->Kill(SIGKILL);
    ++kills;
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    coordinator = std::make_unique<Process>(CoordinatorArgs(c), c.log);
  }
  EXPECT_EQ(kills, 5);
  ASSERT_TRUE(WaitFor([&] { return Finished(c, study); }, 240))
      << schism::testing_support::ReadFile(c.log);
  const Accounting a = Account(Records(c, study));
  Print("coordinator SIGKILLed 5 times", a);
  ExpectExactly(a, 12);
  ExpectTheCoordinatorListsEachTrialOnce(c, study);
}

// Redis with persistence as in production (AOF, fsync always) SIGKILLed and restarted twice
// mid-study: what it acknowledged survives, the coordinator and workers ride out the outage, and
// Redis's own records show every trial once.
TEST(Faults, RedisWithAppendOnlyKilledTwiceMidStudyLosesNothing) {
  schism::testing_support::RedisServer redis(/*appendonly=*/true);
  ASSERT_TRUE(redis.running());
  Cluster c = MakeCluster("fault_redis", 4);
  c.store = redis.url(5);
  Process coordinator(CoordinatorArgs(c), c.log);
  const std::string study = Submit(c);
  Process w1(WorkerArgs(c), c.log), w2(WorkerArgs(c), c.log);
  auto completed = [&] { return Count(RedisRecords(c.store, study), "completed"); };
  int restarts = 0;
  for (int target : {3, 7}) {
    if (!WaitFor([&] { return completed() >= target; }, 240)) break;
    redis.Kill();
    std::this_thread::sleep_for(std::chrono::seconds(2));  // outage: reports are refused
    redis.Start();
    ASSERT_TRUE(redis.running()) << schism::testing_support::ReadFile(redis.log_path());
    ++restarts;
  }
  EXPECT_EQ(restarts, 2);
  ASSERT_TRUE(WaitFor([&] { return Account(RedisRecords(c.store, study)).finished == 1; }, 300))
      << schism::testing_support::ReadFile(c.log);
  const Accounting a = Account(RedisRecords(c.store, study));
  Print("Redis (AOF) SIGKILLed and restarted twice", a);
  ExpectExactly(a, 12);
  ExpectTheCoordinatorListsEachTrialOnce(c, study);
}

// Ten studies submitted at the same moment from ten clients, eight workers racing for their
// trials: ten distinct studies, each finished with its trials exactly once.
TEST(Faults, TenConcurrentSubmitsWithEightWorkersRunEachStudyOnce) {
  Cluster c = MakeCluster("fault_submits", 30, /*trials=*/2);
  Process coordinator(CoordinatorArgs(c), c.log);
  ASSERT_FALSE(Submit(c).empty());  // waits until the coordinator serves; one study more
  std::vector<std::string> ids(10);
  std::vector<std::thread> clients;
  std::atomic<int> ready{0};
  for (size_t i = 0; i < ids.size(); ++i) {
    clients.emplace_back([&, i] {
      ++ready;
      while (ready < static_cast<int>(ids.size())) std::this_thread::yield();
      std::string out = RunCli("submit " + c.config + " --coordinator " + c.address +
                               " --token-file " + c.token_file);
      if (!out.empty() && out.back() == '\n') out.pop_back();
      ids[i] = out;
    });
  }
  for (auto& t : clients) t.join();
  std::set<std::string> distinct(ids.begin(), ids.end());
  ASSERT_EQ(distinct.size(), ids.size()) << "ids: " << ::testing::PrintToString(ids);
  std::vector<std::unique_ptr<Process>> workers;
  for (int i = 0; i < 8; ++i) workers.push_back(std::make_unique<Process>(WorkerArgs(c), c.log));
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const std::string& id : ids)
          if (!Finished(c, id)) return false;
        return true;
      },
      600))
      << schism::testing_support::ReadFile(c.log);
  Accounting total;
  for (const std::string& id : ids) {
    const Accounting a = Account(Records(c, id));
    ExpectExactly(a, 2);
    total.asked += a.asked;
    total.completed += a.completed;
    total.unique += a.unique;
    total.duplicates += a.duplicates;
    total.requeued += a.requeued;
    total.failed += a.failed;
  }
  Print("10 concurrent submits, 8 workers (all studies)", total);
}

}  // namespace
