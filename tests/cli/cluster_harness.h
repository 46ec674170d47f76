// The multi-process harness of the cluster and fault tests: real `schism` processes (coordinator,
// workers, export workers) on loopback, a tiny random model generated per test
// (tests/oracles/model_fixtures.py), and the study's journal read back to count what happened.
#ifndef SCHISM_TESTS_CLI_CLUSTER_HARNESS_H_
#define SCHISM_TESTS_CLI_CLUSTER_HARNESS_H_

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "coordinator/journal_store.h"
#include "tests/test_support.h"

extern char** environ;

namespace schism::cluster_test {

using schism::testing_support::MakeTempDir;
using schism::testing_support::RunOracle;

class Process {
 public:
  Process(const std::vector<std::string>& args, const std::string& log) {
    std::vector<char*> argv;
    std::vector<std::string> storage = args;
    storage.insert(storage.begin(), SCHISM_BINARY);
    for (auto& a : storage) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    posix_spawn(&pid_, SCHISM_BINARY, &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
  }
  ~Process() { Kill(SIGKILL); }
  void Kill(int signal) {
    if (pid_ > 0) {
      ::kill(pid_, signal);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }
  // SIGTERM, then the exit code if the process ends within `seconds` (else -1, and SIGKILL).
  int Terminate(int seconds) {
    ::kill(pid_, SIGTERM);
    const int code = WaitFor(seconds);
    if (code != -2) return code;
    Kill(SIGKILL);
    return -1;
  }
  int Wait() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  // The exit code once the process ends within `seconds`; -2 while it still runs.
  int WaitFor(int seconds) {
    for (int i = 0; i < seconds * 20; ++i) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return -2;
  }
  pid_t pid() const { return pid_; }
  // Sends `signal` without waiting (SIGSTOP freezes the process mid-work, SIGCONT resumes it).
  void Signal(int signal) {
    if (pid_ > 0) ::kill(pid_, signal);
  }
  // The processes it started (from /proc).
  std::vector<pid_t> Children() const {
    std::ifstream in("/proc/" + std::to_string(pid_) + "/task/" + std::to_string(pid_) +
                     "/children");
    std::vector<pid_t> children;
    for (pid_t child; in >> child;) children.push_back(child);
    return children;
  }

 private:
  pid_t pid_ = -1;
};

// The four prompt sets of a study config, from the shared datasets: `directions` harmless and
// harmful training prompts, `refusals` harmful test prompts, `kl` harmless test prompts.
inline std::string PromptSetsToml(int directions, int refusals, int kl) {
  const std::string data = std::string(SCHISM_SOURCE_DIR) + "/../shared/datasets";
  auto set = [&](const char* table, const char* file, int n) {
    return std::string("[") + table + "]\npath = \"" + data + "/" + file +
           "\"\nsplit = \"[:" + std::to_string(n) + "]\"\n";
  };
  return set("good_prompts", "harmless_train.txt", directions) +
         set("bad_prompts", "harmful_train.txt", directions) +
         set("scorer.KeywordRate.prompts", "harmful_test.txt", refusals) +
         set("scorer.KLDivergence.prompts", "harmless_test.txt", kl);
}

struct Cluster {
  std::string dir, store, config, address, token_file, log;
};

// A study of `trials` trials (12 unless said) on a tiny random llama model, with short leases.
inline Cluster MakeCluster(const std::string& name, int lease_seconds, int trials = 12) {
  Cluster c;
  c.dir = MakeTempDir(name);
  std::string out;
  EXPECT_EQ(
      RunOracle("model_fixtures.py",
                {"tiny", "llama-tied", c.dir + "/tiny", schism::testing_support::RealModelPath()},
                &out),
      0)
      << out;
  c.config = c.dir + "/study.toml";
  std::ofstream(c.config) << "model = \"" << c.dir << "/tiny/model.gguf\"\n"
                          << "n_trials = " << trials
                          << "\nn_startup_trials = 4\nmax_response_length = 24\nseed = 11\n"
                          << PromptSetsToml(8, 12, 6)
                          << "[cluster]\nlease_seconds = " << lease_seconds
                          << "\nmax_attempts = 10\n";
  c.store = c.dir + "/store";
  c.address = "127.0.0.1:" + std::to_string(schism::testing_support::FreeLoopbackPort());
  c.token_file = c.dir + "/token";
  std::ofstream(c.token_file) << "cluster-token\n";
  c.log = c.dir + "/log.txt";
  return c;
}

// The `export --study ... --trial N` command (without "schism ") that a run's output ends with,
// its "--dest DIR" replaced by `dest_args`; empty when the output has none.
inline std::string ExportHintCommand(const std::string& out, const std::string& dest_args) {
  const size_t hint = out.find("schism export --study ");
  if (hint == std::string::npos) return "";
  std::string command = out.substr(hint + 7, out.find('\n', hint) - hint - 7);
  const size_t dest = command.find("--dest DIR");
  if (dest == std::string::npos) return "";
  return command.replace(dest, 10, dest_args);
}

inline std::string RunCli(const std::string& args) {
  return schism::testing_support::RunCommand(std::string(SCHISM_BINARY) + " " + args + " 2>&1")
      .output;
}

inline std::string Submit(const Cluster& c) {
  for (int i = 0; i < 50; ++i) {  // the coordinator may still be starting
    std::string out = RunCli("submit " + c.config + " --coordinator " + c.address +
                             " --token-file " + c.token_file);
    if (out.rfind("s", 0) == 0 && out.find(' ') == std::string::npos)
      return out.substr(0, out.size() - 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ADD_FAILURE() << "submit never succeeded";
  return "";
}

// Journal records of the study, parsed.
inline std::vector<nlohmann::json> Records(const Cluster& c, const std::string& study) {
  size_t valid = 0;
  auto records = schism::coordinator::JournalStore::ReadJournal(
      c.store + "/" + study + "/journal.log", &valid);
  std::vector<nlohmann::json> out;
  if (!records.ok()) return out;
  for (const auto& r : *records) out.push_back(nlohmann::json::parse(r));
  return out;
}

inline int Count(const std::vector<nlohmann::json>& records, const std::string& type) {
  int n = 0;
  for (const auto& r : records) n += r["type"] == type;
  return n;
}

inline bool WaitFor(const std::function<bool()>& condition, int seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// Every trial number 0..11 completed exactly once, according to the coordinator.
inline void ExpectTheCoordinatorListsEachTrialOnce(const Cluster& c, const std::string& study) {
  const std::string out = RunCli("trials " + study + " --json --coordinator " + c.address +
                                 " --token-file " + c.token_file);
  std::multiset<int64_t> numbers;
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    auto t = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(t.is_discarded()) << line;
    EXPECT_EQ(t["state"], "TRIAL_STATE_COMPLETE") << line;
    // Proto JSON writes int64 as a string and leaves out zero values.
    numbers.insert(t.contains("number") ? std::stoll(t["number"].get<std::string>()) : 0);
  }
  ASSERT_EQ(numbers.size(), 12u) << out;
  for (int64_t n = 0; n < 12; ++n) EXPECT_EQ(numbers.count(n), 1u) << n;
}

// What a study's records say happened to its trials.
struct Accounting {
  int asked = 0;
  int completed = 0;  // "completed" records
  int unique = 0;     // distinct trial numbers among them
  int duplicates = 0;
  int requeued = 0;
  int failed = 0;
  int finished = 0;
  std::set<int64_t> numbers;  // the completed trials' numbers
};

inline Accounting Account(const std::vector<nlohmann::json>& records) {
  Accounting a;
  std::map<int64_t, int> completions;
  for (const auto& r : records) {
    const std::string type = r.value("type", "");
    if (type == "asked") ++a.asked;
    if (type == "completed") ++completions[r["number"].get<int64_t>()];
    if (type == "requeued") ++a.requeued;
    if (type == "failed") ++a.failed;
    if (type == "finished") ++a.finished;
  }
  for (const auto& [number, n] : completions) {
    a.numbers.insert(number);
    a.completed += n;
    ++a.unique;
    a.duplicates += n - 1;
  }
  return a;
}

inline void Print(const std::string& what, const Accounting& a) {
  std::cout << what << ": asked " << a.asked << " / completed " << a.completed << " / unique "
            << a.unique << " / duplicates " << a.duplicates << " / requeued " << a.requeued
            << " / failed " << a.failed << "\n";
}

// A study of n trials ran to its end exactly once each.
inline void ExpectExactly(const Accounting& a, int n) {
  EXPECT_EQ(a.asked, n);
  EXPECT_EQ(a.completed, n);
  EXPECT_EQ(a.unique, n);
  EXPECT_EQ(a.duplicates, 0);
  EXPECT_EQ(a.failed, 0);
  EXPECT_EQ(a.finished, 1);
}

// ... and according to the journal store's records too.
inline void ExpectEachTrialOnce(const Cluster& c, const std::string& study) {
  ExpectTheCoordinatorListsEachTrialOnce(c, study);
  const Accounting a = Account(Records(c, study));
  EXPECT_EQ(a.completed, 12);
  EXPECT_EQ(a.unique, 12);
  EXPECT_EQ(a.duplicates, 0);
  EXPECT_EQ(a.numbers, (std::set<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}));
  EXPECT_EQ(a.asked, 12);
  EXPECT_EQ(a.finished, 1);
}

inline bool Finished(const Cluster& c, const std::string& study) {
  return Count(Records(c, study), "finished") == 1;
}

inline std::vector<std::string> CoordinatorArgs(const Cluster& c) {
  return {"coordinator", "--listen", c.address, "--store", c.store, "--token-file", c.token_file};
}
inline std::vector<std::string> WorkerArgs(const Cluster& c) {
  return {"worker", "--coordinator", c.address, "--token-file", c.token_file, "--threads", "1"};
}

inline std::vector<std::string> ExportWorkerArgs(const Cluster& c, const std::string& root) {
  return {"export-worker",
          "--coordinator",
          c.address,
          "--token-file",
          c.token_file,
          "--output-root",
          root,
          "--threads",
          "1"};
}

// The JSON object `schism export --json` printed (or {"output": everything} when there is none).
inline nlohmann::json ExportJson(const std::string& out) {
  const size_t brace = out.find('{');
  auto j =
      nlohmann::json::parse(brace == std::string::npos ? "" : out.substr(brace), nullptr, false);
  return j.is_discarded() ? nlohmann::json{{"output", out}} : j;
}

inline std::map<int64_t, nlohmann::json> TrialsByNumber(const Cluster& c,
                                                        const std::string& study) {
  const std::string out = RunCli("trials " + study + " --json --coordinator " + c.address +
                                 " --token-file " + c.token_file);
  std::map<int64_t, nlohmann::json> trials;
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    auto t = nlohmann::json::parse(line, nullptr, false);
    if (t.is_discarded()) continue;
    trials[t.contains("number") ? std::stoll(t["number"].get<std::string>()) : 0] = t;
  }
  return trials;
}

}  // namespace schism::cluster_test

#endif  // SCHISM_TESTS_CLI_CLUSTER_HARNESS_H_
