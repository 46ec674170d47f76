// The Redis study store against a real redis-server that the fixture starts on a free port.
#include "coordinator/redis_store.h"

#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string_view>
#include <thread>
#include <vector>

#include "coordinator/journal_store.h"
#include "coordinator/study_manager.h"
#include "tests/redis_server.h"
#include "tests/test_support.h"

namespace schism::coordinator {
namespace {

testing_support::RedisServer* g_server = nullptr;

// Starts redis-server before the first test of this binary and stops it after the last one.
class RedisEnvironment : public ::testing::Environment {
 public:
  void TearDown() override {
    delete g_server;
    g_server = nullptr;
  }
};
const auto* const kRedisEnvironment = ::testing::AddGlobalTestEnvironment(new RedisEnvironment);

testing_support::RedisServer& Server() {
  if (g_server == nullptr) g_server = new testing_support::RedisServer();
  return *g_server;
}

TEST(RedisStore, AppendsReplaysInOrderAndKeepsArtifacts) {
  ASSERT_TRUE(Server().running()) << "redis-server (Debian package redis-server) must be installed";
  auto store = RedisStore::Connect(Server().url());
  ASSERT_TRUE(store.ok()) << store.status();
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE((*store)->Append("s-order", "{\"i\":" + std::to_string(i) + "}").ok());
  auto all = (*store)->ReplayAll();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->at("s-order").size(), 5u);
  EXPECT_EQ(all->at("s-order")[3], "{\"i\":3}");
  const std::string blob("\0binary\xff", 8);
  ASSERT_TRUE((*store)->PutArtifact("s-order", blob).ok());
  EXPECT_EQ(*(*store)->GetArtifact("s-order"), blob);
  EXPECT_EQ((*store)->GetArtifact("s-none").status().code(), absl::StatusCode::kNotFound);
}

TEST(RedisStore, BadUrlsAndUnreachableServersGiveSpecificErrors) {
  EXPECT_NE(RedisStore::Connect("http://x").status().message().find("redis://"), std::string::npos);
  EXPECT_NE(RedisStore::Connect("redis://127.0.0.1:notaport").status().message().find("notaport"),
            std::string::npos);
  auto down = RedisStore::Connect("redis://127.0.0.1:1");
  EXPECT_EQ(down.status().code(), absl::StatusCode::kUnavailable);
}

// One sequential worker: every lease reported with scores that depend on the parameters.
std::vector<v1::Trial> DriveStudy(StudyManager& m, const std::string& id, int stop_after = -1) {
  const std::string w = m.RegisterWorker({});
  v1::AcquireWorkRequest acquire;
  acquire.set_worker_id(w);
  acquire.set_capacity(1);
  int reports = 0;
  while (stop_after < 0 || reports < stop_after) {
    auto item = m.Acquire(acquire);
    EXPECT_TRUE(item.ok()) << item.status();
    if (item->lease_id().empty()) break;
    v1::ReportResultRequest report;
    report.set_worker_id(w);
    report.set_lease_id(item->lease_id());
    if (item->has_prepare()) {
      report.set_artifact("directions");
      report.set_num_layers(6);
    }
    for (const auto& t : item->evaluate().trials()) {
      const double a = t.params().values().at("attn.o_proj.max_weight").float_value();
      auto* r = report.add_results();
      r->set_number(t.number());
      r->mutable_scores()->set_refusals(static_cast<int>(10 * std::fabs(a - 1.2)));
      r->mutable_scores()->set_refusal_prompts(10);
      r->mutable_scores()->set_kl_divergence(a * a / 10);
    }
    EXPECT_TRUE(m.Report(report).ok());
    ++reports;
  }
  auto detail = m.Get(id);
  return {detail->trials().begin(), detail->trials().end()};
}

v1::StudySpec Spec() {
  v1::StudySpec spec;
  spec.set_model("tiny.gguf");
  spec.set_n_trials(10);
  spec.set_n_startup_trials(4);
  spec.set_seed(21);
  return spec;
}

TEST(RedisStore, SameSeedGivesTheSameTrialsAsTheJournalStore) {
  ASSERT_TRUE(Server().running());
  JournalStore journal(testing_support::MakeTempDir("same_seed_journal"));
  StudyManager on_journal(&journal);
  auto redis = RedisStore::Connect(Server().url(1));
  ASSERT_TRUE(redis.ok());
  StudyManager on_redis(redis->get());
  const auto a = DriveStudy(on_journal, *on_journal.Submit(Spec()));
  const auto b = DriveStudy(on_redis, *on_redis.Submit(Spec()));
  ASSERT_EQ(a.size(), 10u);
  ASSERT_EQ(b.size(), 10u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(a[i].params(), b[i].params()))
        << i;
  }
}

TEST(RedisStore, ARestartedCoordinatorContinuesTheStudy) {
  ASSERT_TRUE(Server().running());
  std::string id;
  {
    auto redis = RedisStore::Connect(Server().url(2));
    StudyManager m(redis->get());
    id = *m.Submit(Spec());
    DriveStudy(m, id, /*stop_after=*/5);  // prepare + 4 trials, then the coordinator "dies"
  }
  auto redis = RedisStore::Connect(Server().url(2));
  StudyManager m(redis->get());
  ASSERT_TRUE(m.Recover().ok());
  EXPECT_EQ(m.Get(id)->summary().completed_trials(), 4);
  const auto trials = DriveStudy(m, id);
  EXPECT_EQ(trials.size(), 10u);
  EXPECT_EQ(m.Get(id)->summary().completed_trials(), 10);
  EXPECT_EQ(m.Get(id)->summary().state(), v1::STUDY_STATE_FINISHED);
}

// A loopback TCP proxy in front of the real Redis that cuts the first XADD that passes through it
// once armed: kForwardThenCut sends the command to Redis, waits for Redis's reply and drops it,
// then closes the client's connection (the reply lost, as when Redis dies right after writing);
// kCutBeforeForwarding closes it without sending the command (nothing written). Everything else
// passes unchanged. (A test double for a network failure, which cannot be made to order here.)
class XaddCuttingProxy {
 public:
  enum Mode { kForwardThenCut, kCutBeforeForwarding };

  explicit XaddCuttingProxy(int redis_port) : redis_port_(redis_port) {
    listener_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (bind(listener_, reinterpret_cast<sockaddr*>(&addr), len) == 0 &&
        listen(listener_, 8) == 0 &&
        getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port_ = ntohs(addr.sin_port);
    }
    acceptor_ = std::thread([this] { Accept(); });
  }
  ~XaddCuttingProxy() {
    stop_ = true;
    shutdown(listener_, SHUT_RDWR);
    close(listener_);
    acceptor_.join();
    for (std::thread& t : pipes_) t.join();
  }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_) + "/0"; }
  void Arm(Mode mode) {
    mode_ = mode;
    armed_ = true;
  }
  int cuts() const { return cuts_; }

 private:
  void Accept() {
    while (!stop_) {
      const int client = accept(listener_, nullptr, nullptr);
      if (client < 0) return;
      const int server = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(static_cast<uint16_t>(redis_port_));
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        close(client);
        close(server);
        continue;
      }
      pipes_.emplace_back([this, client, server] { Pipe(client, server); });
    }
  }
  // Copies bytes both ways until either side closes or an armed XADD is cut.
  void Pipe(int client, int server) {
    char buf[65536];
    pollfd fds[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
    while (!stop_ && poll(fds, 2, 100) >= 0) {
      if (fds[0].revents != 0) {
        const ssize_t n = read(client, buf, sizeof(buf));
        if (n <= 0) break;
        const bool xadd = std::string_view(buf, n).find("XADD") != std::string_view::npos;
        if (xadd && armed_.exchange(false)) {
          ++cuts_;
          if (mode_ == kForwardThenCut) {
            (void)!send(server, buf, n, MSG_NOSIGNAL);
            (void)!read(server, buf, sizeof(buf));  // Redis's reply: the entry id, dropped
          }
          break;
        }
        if (send(server, buf, n, MSG_NOSIGNAL) != n) break;
      }
      if (fds[1].revents != 0) {
        const ssize_t n = read(server, buf, sizeof(buf));
        if (n <= 0 || send(client, buf, n, MSG_NOSIGNAL) != n) break;
      }
    }
    close(client);
    close(server);
  }

  int redis_port_, listener_ = -1, port_ = 0;
  std::atomic<bool> stop_{false}, armed_{false};
  std::atomic<Mode> mode_{kForwardThenCut};
  std::atomic<int> cuts_{0};
  std::thread acceptor_;
  std::vector<std::thread> pipes_;  // touched by the acceptor thread only, joined after it
};

// An append whose XADD reached Redis but whose reply was lost reports success, and the record is
// in the log once; one whose XADD never arrived reports the failure, and nothing is in the log.
// Either way nothing is lost or counted twice: the store asks the stream's last entry (its nonce).
TEST(RedisStore, AnAppendWhoseReplyIsLostIsNeitherLostNorCountedTwice_CuttingProxyDouble) {
  ASSERT_TRUE(Server().running());
  const int redis_port = std::stoi(Server().url().substr(Server().url().rfind(':') + 1));
  XaddCuttingProxy proxy(redis_port);
  // A fresh stream each run (the server outlives the test under --gtest_repeat).
  static int run = 0;
  const std::string id = "s-cut-" + std::to_string(getpid()) + "-" + std::to_string(++run);
  auto store = RedisStore::Connect(proxy.url());
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Append(id, "{\"i\":0}").ok());

  proxy.Arm(XaddCuttingProxy::kForwardThenCut);
  const absl::Status landed = (*store)->Append(id, "{\"i\":1}");
  EXPECT_EQ(proxy.cuts(), 1);
  EXPECT_TRUE(landed.ok()) << "the record is in Redis, so the append succeeded: " << landed;

  proxy.Arm(XaddCuttingProxy::kCutBeforeForwarding);
  const absl::Status lost = (*store)->Append(id, "{\"i\":2}");
  EXPECT_EQ(proxy.cuts(), 2);
  EXPECT_EQ(lost.code(), absl::StatusCode::kUnavailable) << lost;
  EXPECT_NE(lost.message().find("XADD"), std::string::npos) << lost;

  ASSERT_TRUE((*store)->Append(id, "{\"i\":3}").ok());
  auto direct = RedisStore::Connect(Server().url());
  ASSERT_TRUE(direct.ok()) << direct.status();
  auto all = (*direct)->ReplayAll();
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->at(id), (std::vector<std::string>{"{\"i\":0}", "{\"i\":1}", "{\"i\":3}"}));
}

// Redis as deployed (AOF, fsync always) SIGKILLed twice mid-study: what was acknowledged
// survives, a report refused while it is down is retried, an expiry it could not journal is
// logged and counted, and the study ends with each trial completed exactly once — counted from
// the records in Redis itself.
TEST(RedisStore, ARedisKilledTwiceMidStudyLosesNothingAndCountsNothingTwice) {
  testing_support::RedisServer server(/*appendonly=*/true);
  ASSERT_TRUE(server.running());
  Clock::time_point now = Clock::now();
  auto clock = [&] { return now; };
  auto redis = RedisStore::Connect(server.url());
  ASSERT_TRUE(redis.ok()) << redis.status();
  std::string id;
  {
    StudyManager m(redis->get(), clock);
    id = *m.Submit(Spec());
    DriveStudy(m, id, /*stop_after=*/4);  // prepare + 3 trials
    const std::string w = m.RegisterWorker({});
    v1::AcquireWorkRequest acquire;
    acquire.set_worker_id(w);
    acquire.set_capacity(1);
    auto lease = m.Acquire(acquire);
    ASSERT_EQ(lease->evaluate().trials_size(), 1);
    v1::ReportResultRequest report;
    report.set_worker_id(w);
    report.set_lease_id(lease->lease_id());
    auto* r = report.add_results();
    r->set_number(lease->evaluate().trials(0).number());
    r->mutable_scores()->set_refusals(3);
    r->mutable_scores()->set_refusal_prompts(10);
    r->mutable_scores()->set_kl_divergence(0.5);

    server.Kill();
    const absl::Status refused = m.Report(report);
    EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable) << refused;
    EXPECT_EQ(m.Metrics().store_errors, 1) << "a refused report is logged and counted too";
    EXPECT_EQ(m.Get(id)->summary().completed_trials(), 3)
        << "nothing counted that was not journaled";
    server.Start();
    ASSERT_TRUE(server.running());
    EXPECT_TRUE(m.Report(report).ok()) << "the worker's retry lands once Redis is back";
    EXPECT_TRUE(m.Report(report).ok()) << "and a repeat changes nothing";

    // A lease that expires while Redis is down: re-queued in memory, the lost record counted.
    auto lost = m.Acquire(acquire);
    ASSERT_EQ(lost->evaluate().trials_size(), 1);
    server.Kill();
    now += std::chrono::seconds(61);
    m.ExpireLeases();
    EXPECT_EQ(m.Metrics().store_errors, 2);
    server.Start();
    ASSERT_TRUE(server.running());
    DriveStudy(m, id, /*stop_after=*/2);
  }
  // A new coordinator on the restarted Redis finishes the study.
  auto again = RedisStore::Connect(server.url());
  ASSERT_TRUE(again.ok()) << again.status();
  StudyManager m(again->get(), clock);
  ASSERT_TRUE(m.Recover().ok());
  EXPECT_EQ(m.Get(id)->summary().completed_trials(), 6);
  DriveStudy(m, id);
  EXPECT_EQ(m.Get(id)->summary().state(), v1::STUDY_STATE_FINISHED);
  auto records = (*again)->ReplayAll();
  ASSERT_TRUE(records.ok());
  std::map<int64_t, int> completed;
  int asked = 0;
  for (const std::string& record : records->at(id)) {
    if (record.find("\"type\":\"asked\"") != std::string::npos) ++asked;
    const auto at = record.find("\"type\":\"completed\"");
    if (at == std::string::npos) continue;
    const auto number = record.find("\"number\":");
    ASSERT_NE(number, std::string::npos) << record;
    ++completed[std::stoll(record.substr(number + 9))];
  }
  std::printf("redis kill test: asked %d, completed %zu unique, records %zu\n", asked,
              completed.size(), records->at(id).size());
  EXPECT_EQ(asked, 10);
  ASSERT_EQ(completed.size(), 10u);
  for (const auto& [number, count] : completed)
    EXPECT_EQ(count, 1) << "trial " << number << " completed twice";
}

}  // namespace
}  // namespace schism::coordinator
