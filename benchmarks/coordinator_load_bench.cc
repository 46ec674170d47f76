// Load on a real coordinator process (build/cli/schism-coordinator, journal store in a temporary
// folder): W simulated workers, gRPC clients on 127.0.0.1 in this process, acquire, heartbeat and
// report every trial of one N-trial study (random startup sampling for all N, so the sampler is
// not what is measured; tpe_ask_bench measures it). Prints throughput, p50/p99/max latency of each
// RPC, GetStudy and the dashboard's /api/studies/<id> at N trials, and the coordinator's memory.
// A benchmark, not a test: no CTest entry, numbers depend on the machine.
//   coordinator_load_bench [WORKERS=1000] [TRIALS=10000] [CHANNELS=32]
#include <grpcpp/grpcpp.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "schism/v1/coordinator.grpc.pb.h"

extern char** environ;

namespace {

namespace v1 = schism::v1;
using Clock = std::chrono::steady_clock;

constexpr char kToken[] = "load-bench-token";

int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::unique_ptr<grpc::ClientContext> Context(int seconds = 60) {
  auto c = std::make_unique<grpc::ClientContext>();
  c->AddMetadata("authorization", std::string("Bearer ") + kToken);
  c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  return c;
}

// Latencies of one RPC kind, in microseconds.
struct Samples {
  std::vector<double> us;
  int errors = 0;
};
using SampleMap = std::map<std::string, Samples>;

template <typename Call>
grpc::Status Timed(SampleMap* samples, const std::string& name, Call call) {
  const auto start = Clock::now();
  grpc::Status s = call();
  Samples& out = (*samples)[name];
  out.us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
  if (!s.ok()) ++out.errors;
  return s;
}

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * (v.size() - 1) + 0.5))];
}

// kB of VmHWM (peak) and VmRSS of a process.
std::pair<long, long> Memory(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  long hwm = 0, rss = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmHWM:", 0) == 0) hwm = std::atol(line.c_str() + 6);
    if (line.rfind("VmRSS:", 0) == 0) rss = std::atol(line.c_str() + 6);
  }
  return {hwm, rss};
}

}  // namespace

int main(int argc, char** argv) {
  const int workers = argc > 1 ? std::atoi(argv[1]) : 1000;
  const int trials = argc > 2 ? std::atoi(argv[2]) : 10000;
  const int channels = argc > 3 ? std::atoi(argv[3]) : 32;
  const std::string dir =
      std::filesystem::temp_directory_path() / ("schism_load_bench_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/token") << kToken << "\n";
  const int port = FreePort(), http_port = FreePort();
  const std::string address = "127.0.0.1:" + std::to_string(port);

  std::vector<std::string> args = {SCHISM_COORDINATOR_BINARY,
                                   "coordinator",
                                   "--store",
                                   dir + "/store",
                                   "--listen",
                                   address,
                                   "--http",
                                   "127.0.0.1:" + std::to_string(http_port),
                                   "--token-file",
                                   dir + "/token"};
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, (dir + "/coordinator.log").c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t coordinator = -1;
  if (posix_spawn(&coordinator, cargs[0], &actions, nullptr, cargs.data(), environ) != 0) {
    std::fprintf(stderr, "cannot start %s\n", cargs[0]);
    return 1;
  }
  posix_spawn_file_actions_destroy(&actions);

  auto admin_channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  auto studies = v1::StudyService::NewStub(admin_channel);
  for (int i = 0; i < 200; ++i) {
    v1::ListStudiesResponse list;
    if (studies->ListStudies(Context().get(), v1::ListStudiesRequest(), &list).ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const long idle_kb = Memory(coordinator).second;
  v1::SubmitStudyRequest submit;
  submit.mutable_spec()->set_model("load-bench.gguf");
  submit.mutable_spec()->set_n_trials(trials);
  submit.mutable_spec()->set_n_startup_trials(trials);
  submit.mutable_spec()->set_lease_seconds(120);
  v1::SubmitStudyResponse submitted;
  grpc::Status s = studies->SubmitStudy(Context().get(), submit, &submitted);
  if (!s.ok()) {
    std::fprintf(stderr, "submit: %s\n", s.error_message().c_str());
    ::kill(coordinator, SIGKILL);
    return 1;
  }
  const std::string study = submitted.study_id();

  // Separate connections: one channel per `workers / channels` simulated workers.
  std::vector<std::unique_ptr<v1::WorkerService::Stub>> stubs;
  for (int i = 0; i < channels; ++i) {
    grpc::ChannelArguments channel_args;
    channel_args.SetInt("schism.load_bench_channel", i);
    stubs.push_back(v1::WorkerService::NewStub(
        grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), channel_args)));
  }
  std::atomic<bool> done{false};
  std::atomic<int> reported{0};
  std::mutex merge_mu;
  SampleMap all;
  const auto start = Clock::now();
  std::vector<std::thread> pool;
  for (int w = 0; w < workers; ++w) {
    pool.emplace_back([&, w] {
      v1::WorkerService::Stub& stub = *stubs[w % stubs.size()];
      SampleMap samples;
      std::mt19937 rng(w);
      v1::RegisterRequest reg;
      reg.set_host("load-bench");
      reg.set_device("cuda:" + std::to_string(w % 8));
      v1::RegisterResponse registered;
      const bool in = Timed(&samples, "Register", [&] {
                        return stub.Register(Context().get(), reg, &registered);
                      }).ok();
      while (in && !done) {
        v1::AcquireWorkRequest acquire;
        acquire.set_worker_id(registered.worker_id());
        acquire.set_capacity(1);
        acquire.set_wait_seconds(1);
        v1::WorkItem item;
        if (!Timed(&samples, "AcquireWork",
                   [&] { return stub.AcquireWork(Context().get(), acquire, &item); })
                 .ok() ||
            item.lease_id().empty())
          continue;
        v1::ReportResultRequest report;
        report.set_worker_id(registered.worker_id());
        report.set_lease_id(item.lease_id());
        if (item.has_prepare()) {
          report.set_artifact(std::string(24 * 896 * 4, '\1'));  // 24 layers x 896 floats
          report.set_num_layers(24);
          report.set_baseline_refusals(80);
        } else {
          v1::HeartbeatRequest beat;
          beat.set_worker_id(registered.worker_id());
          beat.set_lease_id(item.lease_id());
          v1::HeartbeatResponse beat_response;
          Timed(&samples, "Heartbeat",
                [&] { return stub.Heartbeat(Context().get(), beat, &beat_response); });
          for (const v1::Trial& t : item.evaluate().trials()) {
            v1::TrialResult* r = report.add_results();
            r->set_number(t.number());
            r->mutable_scores()->set_refusals(static_cast<int>(rng() % 100));
            r->mutable_scores()->set_refusal_prompts(100);
            r->mutable_scores()->set_kl_divergence((rng() % 10000) / 1000.0);
          }
        }
        v1::ReportResultResponse ack;
        if (Timed(&samples, "ReportResult",
                  [&] { return stub.ReportResult(Context().get(), report, &ack); })
                .ok() &&
            item.has_evaluate())
          reported += item.evaluate().trials_size();
      }
      std::lock_guard<std::mutex> lock(merge_mu);
      for (auto& [name, v] : samples) {
        all[name].us.insert(all[name].us.end(), v.us.begin(), v.us.end());
        all[name].errors += v.errors;
      }
    });
  }
  while (true) {
    v1::ListStudiesResponse list;
    if (studies->ListStudies(Context().get(), v1::ListStudiesRequest(), &list).ok() &&
        list.studies_size() > 0 && list.studies(0).state() == v1::STUDY_STATE_FINISHED)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  done = true;
  for (auto& t : pool) t.join();
  const auto [peak_kb, rss_kb] = Memory(coordinator);

  std::printf("coordinator load: %d simulated workers on %d channels, %d trials, %d reported\n",
              workers, channels, trials, reported.load());
  std::printf("  %.1f s, %.0f trials/s\n", seconds, trials / seconds);
  std::printf("  %-13s %8s %7s %9s %9s %9s\n", "rpc", "calls", "errors", "p50 ms", "p99 ms",
              "max ms");
  for (const auto& [name, v] : all) {
    std::printf("  %-13s %8zu %7d %9.2f %9.2f %9.2f\n", name.c_str(), v.us.size(), v.errors,
                Percentile(v.us, 0.5) / 1e3, Percentile(v.us, 0.99) / 1e3,
                Percentile(v.us, 1.0) / 1e3);
  }
  // What a user's `schism trials` and the dashboard ask of a study this size.
  std::vector<double> get_ms, http_ms;
  size_t detail_bytes = 0, http_bytes = 0;
  httplib::Client http("127.0.0.1", http_port);
  http.set_read_timeout(60, 0);
  grpc::ChannelArguments big;  // a 10,000-trial study outgrows gRPC's 4 MiB default
  big.SetMaxReceiveMessageSize(64 << 20);
  auto reader = v1::StudyService::NewStub(
      grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), big));
  for (int i = 0; i < 5; ++i) {
    v1::GetStudyRequest get;
    get.set_study_id(study);
    v1::StudyDetail detail;
    const auto t0 = Clock::now();
    if (reader->GetStudy(Context().get(), get, &detail).ok()) {
      get_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      detail_bytes = detail.ByteSizeLong();
    }
    const auto t1 = Clock::now();
    auto res = http.Get("/api/studies/" + study,
                        httplib::Headers{{"Authorization", std::string("Bearer ") + kToken}});
    if (res && res->status == 200) {
      http_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t1).count());
      http_bytes = res->body.size();
    }
  }
  std::printf(
      "  GetStudy at %d trials: p50 %.1f ms (%zu bytes); /api/studies/<id>: p50 %.1f ms "
      "(%zu bytes)\n",
      trials, Percentile(get_ms, 0.5), detail_bytes, Percentile(http_ms, 0.5), http_bytes);
  std::printf("  coordinator memory: %.1f MB idle, %.1f MB at the end, %.1f MB peak\n",
              idle_kb / 1024.0, rss_kb / 1024.0, peak_kb / 1024.0);
  ::kill(coordinator, SIGTERM);
  ::waitpid(coordinator, nullptr, 0);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return 0;
}
