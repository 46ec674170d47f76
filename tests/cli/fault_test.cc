// Fault tests of the job system (issue #16): real processes on loopback, killed with SIGKILL as a
// crash would, and exact trial accounting read from the store itself afterwards. Each prints its
// counts: asked / completed / unique / duplicates / requeued / failed.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/sha256.h"
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

namespace export_faults {

namespace fs = std::filesystem;

std::string Client(const Cluster& c) {
  return " --coordinator " + c.address + " --token-file " + c.token_file;
}

// Entries of `dir` whose names start with `prefix`.
std::vector<std::string> Entries(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    if (it->path().filename().string().rfind(prefix, 0) == 0) out.push_back(it->path().string());
  }
  return out;
}

// The first entry of `dir` starting with `prefix`, polled every millisecond (an export of the
// tiny model writes for well under a second), or "" after `seconds`.
std::string WaitForEntry(const std::string& dir, const std::string& prefix, int seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (auto found = Entries(dir, prefix); !found.empty()) return found[0];
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return "";
}

// Each journaled state of export `id` (one "export" record per change), as the ExportJob JSON.
std::vector<nlohmann::json> ExportRecords(const Cluster& c, const std::string& study,
                                          const std::string& id) {
  std::vector<nlohmann::json> jobs;
  for (const auto& r : Records(c, study)) {
    if (r.value("type", "") != "export") continue;
    nlohmann::json job =
        r["job"].is_string() ? nlohmann::json::parse(r["job"].get<std::string>()) : r["job"];
    if (job.value("exportId", job.value("export_id", "")) == id) jobs.push_back(job);
  }
  return jobs;
}

int InState(const std::vector<nlohmann::json>& jobs, const std::string& state) {
  int n = 0;
  for (const auto& j : jobs) n += j.value("state", "") == state;
  return n;
}

// Hidden entries (.directions-*, .<dest>.partial-*, .shard-*.data.tmp) and *.tmp under `root`.
std::vector<std::string> Leftovers(const std::string& root) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    const std::string name = e.path().filename().string();
    if (name[0] == '.' || name.ends_with(".tmp")) out.push_back(e.path().string());
  }
  return out;
}

// Exactly one DONE record; every file reproduce.json lists is there with its SHA-256 and size,
// and nothing else; the DONE record names the same files; nothing left over under `root`.
void ExpectDoneOnceIntactAndClean(const Cluster& c, const std::string& study, const std::string& id,
                                  const std::string& root, const std::string& dest) {
  const auto jobs = ExportRecords(c, study, id);
  std::cout << "export " << id << ": records " << jobs.size() << ", running "
            << InState(jobs, "EXPORT_STATE_RUNNING") << ", queued "
            << InState(jobs, "EXPORT_STATE_QUEUED") << ", done "
            << InState(jobs, "EXPORT_STATE_DONE") << ", failed "
            << InState(jobs, "EXPORT_STATE_FAILED") << std::endl;
  ASSERT_EQ(InState(jobs, "EXPORT_STATE_DONE"), 1) << ::testing::PrintToString(jobs);
  EXPECT_EQ(InState(jobs, "EXPORT_STATE_FAILED"), 0);
  const nlohmann::json& done = *std::find_if(jobs.begin(), jobs.end(), [](const auto& j) {
    return j.value("state", "") == "EXPORT_STATE_DONE";
  });
  const auto reproduce =
      nlohmann::json::parse(schism::testing_support::ReadFile(dest + "/reproduce.json"));
  std::map<std::string, std::string> listed, reported;
  for (const auto& f : reproduce["outputs"]) {
    const std::string path = f["path"];
    listed[path] = f["sha256"];
    auto sha = schism::common::Sha256OfFile(dest + "/" + path);
    ASSERT_TRUE(sha.ok()) << path << ": " << sha.status();
    EXPECT_EQ(*sha, listed[path]) << path;
    EXPECT_EQ(fs::file_size(dest + "/" + path), f["bytes"].get<uint64_t>()) << path;
  }
  EXPECT_FALSE(listed.empty());
  std::set<std::string> on_disk, names;
  for (const auto& e : fs::recursive_directory_iterator(dest)) {
    if (e.is_regular_file()) on_disk.insert(fs::relative(e.path(), dest).string());
  }
  on_disk.erase("reproduce.json");  // written after the outputs are hashed
  for (const auto& [path, sha] : listed) names.insert(path);
  EXPECT_EQ(on_disk, names);
  for (const auto& f : done["files"]) reported[f["path"]] = f["sha256"];
  reported.erase("reproduce.json");
  EXPECT_EQ(reported, listed);
  EXPECT_EQ(Leftovers(root), std::vector<std::string>{});
  EXPECT_EQ(Entries(root, ""), std::vector<std::string>{dest});
}

// A finished 4-trial study (its trial worker gone) and an export of trial 3 to `root`/tiny,
// queued; returns the export's id.
std::string QueueExport(const Cluster& c, std::string* study, const std::string& root) {
  *study = Submit(c);
  {
    Process worker(WorkerArgs(c), c.log);
    EXPECT_TRUE(WaitFor([&] { return Finished(c, *study); }, 240))
        << schism::testing_support::ReadFile(c.log);
    EXPECT_EQ(worker.Terminate(15), 0);
  }
  fs::create_directories(root);
  const auto queued = ExportJson(
      RunCli("export " + *study + " 3 --dest tiny --format both --json --no-wait" + Client(c)));
  return queued.value("export_id", "");
}

bool ExportDone(const Cluster& c, const std::string& study, const std::string& id) {
  return InState(ExportRecords(c, study, id), "EXPORT_STATE_DONE") > 0;
}

// An export worker SIGKILLed in the middle of writing (frozen with SIGSTOP as soon as its staging
// folder appears, so the kill lands mid-write however fast the export is): its lease expires, a
// new export worker removes the dead one's directions file and staging folder and writes the
// export once. One DONE, every file as reproduce.json hashes it, nothing left over.
TEST(Faults, ExportWorkerKilledMidWriteIsReplacedAndTheExportIsDoneOnce) {
  Cluster c = MakeCluster("fault_export_worker", /*lease_seconds=*/3, /*trials=*/4);
  Process coordinator(CoordinatorArgs(c), c.log);
  const std::string root = c.dir + "/exports", dest = root + "/tiny";
  std::string study;
  const std::string id = QueueExport(c, &study, root);
  ASSERT_FALSE(id.empty()) << schism::testing_support::ReadFile(c.log);
  auto victim = std::make_unique<Process>(ExportWorkerArgs(c, root), c.log);
  const std::string staging =
      WaitForEntry(root, ".tiny.partial-" + std::to_string(victim->pid()) + "-", 120);
  ASSERT_FALSE(staging.empty()) << schism::testing_support::ReadFile(c.log);
  victim->Signal(SIGSTOP);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_FALSE(fs::exists(dest)) << "committed before the kill";
  victim->Kill(SIGKILL);
  EXPECT_TRUE(fs::is_directory(staging));
  EXPECT_EQ(Entries(root, ".directions-" + id + "-").size(), 1u) << "the dead worker's file";

  Process replacement(ExportWorkerArgs(c, root), c.log);
  ASSERT_TRUE(WaitFor([&] { return ExportDone(c, study, id); }, 240))
      << schism::testing_support::ReadFile(c.log);
  EXPECT_EQ(replacement.Terminate(15), 0);
  const auto job = ExportJson(
      RunCli("export " + study + " 3 --dest tiny --format both --json --no-wait" + Client(c)));
  EXPECT_EQ(job["export_id"], id);
  EXPECT_EQ(job["state"], "EXPORT_STATE_DONE");
  EXPECT_EQ(job["attempts"], 2);
  const std::string log = schism::testing_support::ReadFile(c.log);
  EXPECT_NE(log.find("removed 1 directions file(s) of killed exports"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(staging));
  ExpectDoneOnceIntactAndClean(c, study, id, root, dest);
}

// The coordinator SIGKILLed while an export is mid-write (the export worker frozen there for the
// whole outage) and restarted on its journal: the export is queued again, the worker's late
// report is refused, and the next lease finds the export finished on disk instead of writing it
// again. One DONE, every file as reproduce.json hashes it, nothing left over.
TEST(Faults, CoordinatorKilledMidExportRestartsAndTheExportIsDoneOnce) {
  Cluster c = MakeCluster("fault_export_coordinator", /*lease_seconds=*/3, /*trials=*/4);
  auto coordinator = std::make_unique<Process>(CoordinatorArgs(c), c.log);
  const std::string root = c.dir + "/exports", dest = root + "/tiny";
  std::string study;
  const std::string id = QueueExport(c, &study, root);
  ASSERT_FALSE(id.empty()) << schism::testing_support::ReadFile(c.log);
  Process export_worker(ExportWorkerArgs(c, root), c.log);
  ASSERT_FALSE(WaitForEntry(root, ".tiny.partial-", 120).empty())
      << schism::testing_support::ReadFile(c.log);
  export_worker.Signal(SIGSTOP);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_FALSE(fs::exists(dest)) << "committed before the kill";
  coordinator->Kill(SIGKILL);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  coordinator = std::make_unique<Process>(CoordinatorArgs(c), c.log);
  nlohmann::json back;
  ASSERT_TRUE(WaitFor(
      [&] {
        back = ExportJson(RunCli("export " + study +
                                 " 3 --dest tiny --format both --json --no-wait" + Client(c)));
        return back.contains("state");
      },
      30));
  EXPECT_EQ(back["export_id"], id);
  EXPECT_EQ(back["state"], "EXPORT_STATE_QUEUED") << back.dump();
  export_worker.Signal(SIGCONT);
  ASSERT_TRUE(WaitFor([&] { return ExportDone(c, study, id); }, 240))
      << schism::testing_support::ReadFile(c.log);
  EXPECT_EQ(export_worker.Terminate(15), 0);
  const std::string log = schism::testing_support::ReadFile(c.log);
  const std::string written = "export-worker: " + id + ": trial";
  size_t writes = 0;
  for (size_t at = log.find(written); at != std::string::npos; at = log.find(written, at + 1))
    ++writes;
  EXPECT_EQ(writes, 1u) << "written once; the second lease found it finished\n" << log;
  ExpectDoneOnceIntactAndClean(c, study, id, root, dest);
}

}  // namespace export_faults

}  // namespace
