#include "cli/commands.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "schism/proto_json.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cli/args.h"
#include "cli/tensor_parallel_launch.h"
#include "common/byte_size.h"
#include "common/env.h"
#include "common/prompt_set.h"
#include "coordinator/coordinator_server.h"
#include "coordinator/http_side_port.h"
#include "coordinator/journal_store.h"
#include "coordinator/redis_store.h"
#include "coordinator/study_config.h"
#include "coordinator/study_manager.h"
#include "schism/v1/coordinator.grpc.pb.h"
#include "worker/export_worker.h"
#include "worker/runtime/device.h"
#include "worker/trial_worker.h"

#ifndef SCHISM_SOURCE_DIR
#error "SCHISM_SOURCE_DIR must be defined by the build"
#endif

namespace schism::cli {
namespace {

std::atomic<bool> g_stop{false};
void HandleSignal(int) { g_stop = true; }

void InstallSignalHandlers() {
  std::signal(SIGINT, HandleSignal);
  std::signal(SIGTERM, HandleSignal);
}

absl::StatusOr<std::string> ReadToken(const Args& args) {
  auto path = args.Get("token-file");
  if (!path) return std::string();
  std::ifstream in(*path);
  if (!in) return absl::NotFoundError("--token-file " + *path + ": cannot read");
  std::string token;
  std::getline(in, token);
  while (!token.empty() && (token.back() == '\r' || token.back() == ' ')) token.pop_back();
  if (token.empty()) return absl::InvalidArgumentError("--token-file " + *path + ": empty token");
  return token;
}

// --tls-ca / --tls-cert / --tls-key of the client commands.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> Credentials(const Args& args) {
  return coordinator::ClientCredentials(args.Get("tls-ca").value_or(""),
                                        args.Get("tls-cert").value_or(""),
                                        args.Get("tls-key").value_or(""));
}

const char* StateName(v1::StudyState s) {
  switch (s) {
    case v1::STUDY_STATE_QUEUED:
      return "queued";
    case v1::STUDY_STATE_PREPARING:
      return "preparing";
    case v1::STUDY_STATE_RUNNING:
      return "running";
    case v1::STUDY_STATE_FINISHED:
      return "finished";
    case v1::STUDY_STATE_CANCELLED:
      return "cancelled";
    case v1::STUDY_STATE_FAILED:
      return "failed";
    default:
      return "unknown";
  }
}

void PrintParetoTable(const v1::StudyDetail& detail) {
  std::printf("\nPareto-optimal trials (refusals, KL divergence):\n");
  for (int64_t number : detail.pareto_front()) {
    const v1::Trial& t = detail.trials(static_cast<int>(number));
    std::printf("  [Trial %3lld] Refusals: %3d/%d, KL divergence: %.4f\n",
                static_cast<long long>(number), t.scores().refusals(), t.scores().refusal_prompts(),
                t.scores().kl_divergence());
  }
}

// A client-side call context carrying the token.
std::unique_ptr<grpc::ClientContext> Context(const std::string& token) {
  auto c = std::make_unique<grpc::ClientContext>();
  if (!token.empty()) c->AddMetadata("authorization", "Bearer " + token);
  c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  return c;
}

// A StudyService client from --coordinator, --token-file and --tls-ca/--tls-cert/--tls-key.
struct StudyClient {
  std::string token;
  std::unique_ptr<v1::StudyService::Stub> stub;
  std::unique_ptr<grpc::ClientContext> Context() const { return cli::Context(token); }
};

absl::StatusOr<StudyClient> ConnectStudyClient(const Args& args) {
  auto token = ReadToken(args);
  if (!token.ok()) return token.status();
  auto credentials = Credentials(args);
  if (!credentials.ok()) return credentials.status();
  // A study of many trials outgrows gRPC's 4 MiB default (about 250 bytes a trial).
  grpc::ChannelArguments channel_args;
  channel_args.SetMaxReceiveMessageSize(64 << 20);
  return StudyClient{*token, v1::StudyService::NewStub(grpc::CreateCustomChannel(
                                 *args.Get("coordinator"), *credentials, channel_args))};
}

}  // namespace

int RunCoordinator(const Args& args) {
  auto store_dir = args.Get("store");  // required
  auto token = ReadToken(args);
  if (!token.ok())
    return Fail("coordinator", kExitUsageError, std::string(token.status().message()));
  std::unique_ptr<coordinator::StudyStore> store;
  if (store_dir->rfind("redis://", 0) == 0) {
    auto redis = coordinator::RedisStore::Connect(*store_dir);
    if (!redis.ok())
      return Fail("coordinator", kExitRuntimeError, std::string(redis.status().message()));
    store = std::move(*redis);
  } else {
    store = std::make_unique<coordinator::JournalStore>(*store_dir);
  }
  coordinator::StudyManager manager(store.get());
  if (auto s = manager.Recover(); !s.ok())
    return Fail("coordinator", kExitRuntimeError, std::string(s.message()));
  coordinator::ServerOptions options;
  options.listen = args.Get("listen").value_or("127.0.0.1:50051");
  options.token = *token;
  options.tls_cert_file = args.Get("tls-cert").value_or("");
  options.tls_key_file = args.Get("tls-key").value_or("");
  options.client_ca_file = args.Get("client-ca").value_or("");
  // The side port answers /healthz at once and /readyz once the store is replayed and gRPC serves.
  std::unique_ptr<coordinator::HttpSidePort> http;
  if (auto http_listen = args.Get("http")) {
    auto started = coordinator::HttpSidePort::Start(&manager, *http_listen, *token);
    if (!started.ok()) {
      return Fail("coordinator",
                  started.status().code() == absl::StatusCode::kInvalidArgument ? kExitUsageError
                                                                                : kExitRuntimeError,
                  std::string(started.status().message()));
    }
    http = std::move(*started);
  }
  auto server = coordinator::CoordinatorServer::Start(&manager, options);
  if (!server.ok())
    return Fail("coordinator", kExitRuntimeError, std::string(server.status().message()));
  std::printf("schism coordinator listening on port %d (store %s)\n", (*server)->port(),
              store_dir->c_str());
  if (http) {
    http->SetReady(true);
    std::printf("dashboard, /metrics, /healthz, /readyz on http port %d\n", http->port());
  }
  std::fflush(stdout);
  InstallSignalHandlers();
  while (!g_stop) {
    manager.ExpireLeases();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  (*server)->Shutdown();
  return kExitOk;
}

int RunWorker(const Args& args) {
  auto address = args.Get("coordinator");  // required
  auto device = model::ParseDevice(args.Get("device").value_or("cpu"));
  if (!device.ok())
    return Fail("worker", kExitUsageError, "--device: " + std::string(device.status().message()));
  auto dtype = model::ParseComputeDtype(args.Get("dtype").value_or(""), *device);
  if (!dtype.ok())
    return Fail("worker", kExitUsageError, "--dtype: " + std::string(dtype.status().message()));
  auto token = ReadToken(args);
  if (!token.ok()) return Fail("worker", kExitUsageError, std::string(token.status().message()));
  auto k = args.GetInt("trials-per-batch");
  auto threads = args.GetInt("threads");
  if (!k.ok() || !threads.ok())
    return Fail("worker", kExitUsageError, "--trials-per-batch and --threads take integers");
  InstallSignalHandlers();
  auto credentials = Credentials(args);
  if (!credentials.ok())
    return Fail("worker", kExitUsageError, std::string(credentials.status().message()));
  auto launch = PlanTensorParallel(args);
  if (!launch.ok()) return Fail("worker", kExitUsageError, std::string(launch.status().message()));
  worker::WorkerOptions options;
  options.link.coordinator = *address;
  options.link.token = *token;
  options.link.credentials = *credentials;
  options.trials_per_batch = static_cast<int>(k->value_or(1));
  options.threads = static_cast<int>(threads->value_or(0));
  options.device = RankDevice(*device, *launch);
  if (args.Get("dtype")) options.dtype = *dtype;
  options.link.stop = &g_stop;
  std::vector<pid_t> local_ranks;
  if (launch->spawn_local_ranks) {
    // CPU ranks on one host share its cores.
    const int cores = static_cast<int>(std::thread::hardware_concurrency());
    const int per_rank = device->is_cpu() ? std::max(1, cores / launch->options.world_size) : 0;
    if (device->is_cpu() && options.threads == 0) options.threads = per_rank;
    auto started = StartLocalRanks(args, &*launch, *device, per_rank);
    if (!started.ok())
      return Fail("worker", kExitRuntimeError, std::string(started.status().message()));
    local_ranks = std::move(*started);
  }
  if (launch->options.world_size > 1) {
    auto group = model::TensorParallel::Connect(launch->options, options.device);
    if (!group.ok()) {
      ReapLocalRanks(local_ranks, 0);
      return Fail("worker", kExitRuntimeError, std::string(group.status().message()));
    }
    options.tensor_parallel = std::move(*group);
    std::fprintf(stderr, "schism worker: tensor-parallel rank %d of %d (%s, %s)\n",
                 launch->options.rank, launch->options.world_size,
                 options.tensor_parallel->backend_name(), options.device.str().c_str());
  }
  worker::TrialWorker w(options);
  const absl::Status status = w.Run();
  ReapLocalRanks(local_ranks, 30);
  if (!status.ok()) return Fail("worker", kExitRuntimeError, std::string(status.message()));
  return kExitOk;
}

int RunExportWorker(const Args& args) {
  auto address = args.Get("coordinator");  // both required
  auto root = args.Get("output-root");
  auto token = ReadToken(args);
  if (!token.ok())
    return Fail("export-worker", kExitUsageError, std::string(token.status().message()));
  auto credentials = Credentials(args);
  if (!credentials.ok())
    return Fail("export-worker", kExitUsageError, std::string(credentials.status().message()));
  auto threads = args.GetInt("threads");
  if (!threads.ok())
    return Fail("export-worker", kExitUsageError, std::string(threads.status().message()));
  model::SetComputeThreads(static_cast<int>(threads->value_or(0)));
  InstallSignalHandlers();
  worker::ExportWorkerOptions options;
  options.link.coordinator = *address;
  options.link.token = *token;
  options.link.credentials = *credentials;
  options.link.stop = &g_stop;
  options.output_root = *root;
  if (auto s = worker::RunExportWorker(options); !s.ok()) {
    return Fail(
        "export-worker",
        s.code() == absl::StatusCode::kFailedPrecondition ? kExitUsageError : kExitRuntimeError,
        std::string(s.message()));
  }
  return kExitOk;
}

int RunRemoteExport(const Args& args) {
  int64_t trial = -1;
  if (!absl::SimpleAtoi(args.positionals()[1], &trial)) {
    return UsageError(args, "TRIAL is a trial number, not \"" + args.positionals()[1] + "\"");
  }
  auto client = ConnectStudyClient(args);
  if (!client.ok()) return Fail("export", kExitUsageError, std::string(client.status().message()));
  v1::RequestExportRequest req;
  req.set_study_id(args.positionals()[0]);
  req.set_trial(trial);
  req.set_dest(*args.Get("dest"));
  req.set_format(args.Get("format").value_or(""));  // empty: the study's [export] format
  req.set_dtype(args.Get("dtype").value_or(""));
  req.set_source_model(args.Get("source-model").value_or(""));
  req.set_overwrite(args.Has("overwrite"));
  if (auto size = args.Get("max-shard-size")) {
    auto bytes = common::ParseByteSize(*size);
    if (!bytes.ok())
      return Fail("export", kExitUsageError,
                  "--max-shard-size: " + std::string(bytes.status().message()));
    req.set_max_shard_bytes(*bytes);
  }
  v1::ExportJob job;
  auto c = client->Context();
  grpc::Status s = client->stub->RequestExport(c.get(), req, &job);
  if (!s.ok()) {
    const bool usage = s.error_code() == grpc::StatusCode::INVALID_ARGUMENT ||
                       s.error_code() == grpc::StatusCode::NOT_FOUND ||
                       s.error_code() == grpc::StatusCode::FAILED_PRECONDITION;
    return Fail("export", usage ? kExitUsageError : kExitRuntimeError, s.error_message());
  }
  if (!args.Has("json")) std::fprintf(stderr, "export %s queued\n", job.export_id().c_str());
  // Waits for an export worker, polling the coordinator; transient errors are retried.
  while (!args.Has("no-wait") && job.state() != v1::EXPORT_STATE_DONE &&
         job.state() != v1::EXPORT_STATE_FAILED) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    v1::GetExportRequest get;
    get.set_export_id(job.export_id());
    v1::ExportJob latest;
    auto gc = client->Context();
    s = client->stub->GetExport(gc.get(), get, &latest);
    if (s.ok()) {
      job = std::move(latest);
    } else if (s.error_code() != grpc::StatusCode::UNAVAILABLE) {
      return Fail("export", kExitRuntimeError, s.error_message());
    }
  }
  if (args.Has("json")) {
    std::printf("%s\n", ProtoJson(job).c_str());
  } else if (job.state() == v1::EXPORT_STATE_DONE) {
    uint64_t bytes = 0;
    for (const v1::ExportedFile& f : job.files()) bytes += f.bytes();
    std::printf("exported trial %lld of %s to %s: %d files, %.1f MB\n",
                static_cast<long long>(trial), req.study_id().c_str(), job.destination().c_str(),
                job.files_size(), bytes / 1e6);
  } else if (job.state() != v1::EXPORT_STATE_FAILED) {
    std::printf("%s\n", job.export_id().c_str());
  }
  if (job.state() == v1::EXPORT_STATE_FAILED) return Fail("export", kExitRuntimeError, job.error());
  return kExitOk;
}

int RunSubmit(const Args& args) {
  auto spec = coordinator::StudySpecFromTomlFile(args.positionals()[0]);
  if (!spec.ok()) return Fail("submit", kExitUsageError, std::string(spec.status().message()));
  auto client = ConnectStudyClient(args);
  if (!client.ok()) return Fail("submit", kExitUsageError, std::string(client.status().message()));
  v1::SubmitStudyRequest req;
  *req.mutable_spec() = *spec;
  v1::SubmitStudyResponse resp;
  auto c = client->Context();
  const grpc::Status s = client->stub->SubmitStudy(c.get(), req, &resp);
  if (!s.ok())
    return Fail(
        "submit",
        s.error_code() == grpc::StatusCode::INVALID_ARGUMENT ? kExitUsageError : kExitRuntimeError,
        s.error_message());
  std::printf("%s\n", args.Has("json") ? ProtoJson(resp).c_str() : resp.study_id().c_str());
  return kExitOk;
}

int RunStatus(const Args& args) {
  auto client = ConnectStudyClient(args);
  if (!client.ok()) return Fail("status", kExitUsageError, std::string(client.status().message()));
  std::vector<v1::StudySummary> studies;
  v1::ListStudiesRequest page;
  do {  // the coordinator pages long listings
    v1::ListStudiesResponse list;
    auto c = client->Context();
    const grpc::Status s = client->stub->ListStudies(c.get(), page, &list);
    if (!s.ok()) return Fail("status", kExitRuntimeError, s.error_message());
    studies.insert(studies.end(), list.studies().begin(), list.studies().end());
    page.set_page_token(list.next_page_token());
  } while (!page.page_token().empty());
  for (const v1::StudySummary& study : studies) {
    if (!args.positionals().empty() && study.study_id() != args.positionals()[0]) continue;
    if (args.Has("json")) {
      std::printf("%s\n", ProtoJson(study).c_str());
    } else {
      std::printf("%s  %-9s  %d/%d complete, %d failed, %d running  %s\n", study.study_id().c_str(),
                  StateName(study.state()), study.completed_trials(), study.spec().n_trials(),
                  study.failed_trials(), study.running_trials(), study.spec().model().c_str());
    }
  }
  return kExitOk;
}

int RunTrials(const Args& args) {
  auto client = ConnectStudyClient(args);
  if (!client.ok()) return Fail("trials", kExitUsageError, std::string(client.status().message()));
  v1::GetStudyRequest req;
  req.set_study_id(args.positionals()[0]);
  v1::StudyDetail detail;
  auto c = client->Context();
  const grpc::Status s = client->stub->GetStudy(c.get(), req, &detail);
  if (!s.ok())
    return Fail("trials",
                s.error_code() == grpc::StatusCode::NOT_FOUND ? kExitUsageError : kExitRuntimeError,
                s.error_message());
  std::vector<int64_t> numbers;
  if (args.Has("pareto")) {
    numbers.assign(detail.pareto_front().begin(), detail.pareto_front().end());
  } else {
    for (const v1::Trial& t : detail.trials()) numbers.push_back(t.number());
  }
  for (int64_t n : numbers) {
    const v1::Trial& t = detail.trials(static_cast<int>(n));
    if (args.Has("json")) {
      std::printf("%s\n", ProtoJson(t).c_str());
    } else if (t.state() == v1::TRIAL_STATE_COMPLETE) {
      std::printf("[Trial %3lld] Refusals: %3d/%d, KL divergence: %.4f\n",
                  static_cast<long long>(n), t.scores().refusals(), t.scores().refusal_prompts(),
                  t.scores().kl_divergence());
    } else {
      std::printf("[Trial %3lld] %s\n", static_cast<long long>(n),
                  t.state() == v1::TRIAL_STATE_FAILED ? "failed" : "pending");
    }
  }
  return kExitOk;
}

int RunEmbedded(const Args& args) {
  // Without a config: the quick study README's main command runs on 2 CPU cores in minutes:
  // 16 trials (8 random), k = 2 per lease, directions from 64 + 64 prompts, refusals on all 100
  // harmful test prompts with 32-token responses, KL on 32 harmless test prompts.
  v1::StudySpec spec;
  if (!args.positionals().empty()) {
    auto parsed = coordinator::StudySpecFromTomlFile(args.positionals()[0]);
    if (!parsed.ok()) return Fail("run", kExitUsageError, std::string(parsed.status().message()));
    spec = *parsed;
  } else {
    const std::string data = common::DefaultDataDir();
    spec.set_model(std::string(SCHISM_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    spec.set_n_trials(16);
    spec.set_n_startup_trials(8);
    spec.set_max_response_length(32);
    spec.set_trials_per_lease(2);
    spec.set_orthogonalize_direction(true);
    spec.mutable_good_prompts()->set_path(data + "/harmless_train.txt");
    spec.mutable_good_prompts()->set_split("[:64]");
    spec.mutable_bad_prompts()->set_path(data + "/harmful_train.txt");
    spec.mutable_bad_prompts()->set_split("[:64]");
    spec.mutable_refusal_prompts()->set_path(data + "/harmful_test.txt");
    spec.mutable_refusal_prompts()->set_split("[:100]");
    spec.mutable_kl_prompts()->set_path(data + "/harmless_test.txt");
    spec.mutable_kl_prompts()->set_split("[:32]");
  }
  if (auto m = args.Get("model")) spec.set_model(*m);
  auto trials = args.GetInt("trials");
  auto workers = args.GetInt("workers");
  auto k = args.GetInt("trials-per-batch");
  auto threads = args.GetInt("threads");
  if (!trials.ok() || !workers.ok() || !k.ok() || !threads.ok()) {
    return Fail("run", kExitUsageError,
                "--trials, --workers, --trials-per-batch and --threads take integers");
  }
  auto device = model::ParseDevice(args.Get("device").value_or("cpu"));
  if (!device.ok())
    return Fail("run", kExitUsageError, "--device: " + std::string(device.status().message()));
  auto dtype = model::ParseComputeDtype(args.Get("dtype").value_or(""), *device);
  if (!dtype.ok())
    return Fail("run", kExitUsageError, "--dtype: " + std::string(dtype.status().message()));
  if (*trials) spec.set_n_trials(static_cast<int32_t>(**trials));
  if (*k) spec.set_trials_per_lease(static_cast<int32_t>(**k));
  const int n_workers = static_cast<int>(workers->value_or(1));
  if (n_workers < 1 || n_workers > 64)
    return Fail("run", kExitUsageError, "--workers must be in [1, 64]");
  v1::StudySpec submitted = spec;
  submitted.clear_study_checkpoint_dir();  // run's own setting, not the coordinator's
  auto normalized = coordinator::NormalizeStudySpec(submitted);
  if (!normalized.ok())
    return Fail("run", kExitUsageError, std::string(normalized.status().message()));
  // Everything runs on this machine: a missing model or a prompt set that cannot be read (a
  // wrong path, column or split) is said now, not after the model has loaded.
  if (std::error_code ec; !std::filesystem::exists(normalized->model(), ec)) {
    return Fail("run", kExitUsageError,
                "model " + normalized->model() + ": no such file or folder");
  }
  const std::pair<const char*, const v1::PromptSet*> sets[] = {
      {"good_prompts", &normalized->good_prompts()},
      {"bad_prompts", &normalized->bad_prompts()},
      {"refusal prompts (bad_evaluation_prompts)", &normalized->refusal_prompts()},
      {"KL prompts (good_evaluation_prompts)", &normalized->kl_prompts()}};
  for (const auto& [name, set] : sets) {
    auto lines = common::LoadPromptLines(set->path(), set->split(), set->column());
    if (!lines.ok())
      return Fail("run", kExitUsageError, absl::StrCat(name, ": ", lines.status().message()));
  }

  // Heretic's study_checkpoint_dir is where `run` keeps its store unless --store says otherwise.
  const std::string store_dir = args.Get("store").value_or(
      spec.study_checkpoint_dir().empty() ? "schism-study" : spec.study_checkpoint_dir());
  coordinator::JournalStore store(store_dir);
  coordinator::StudyManager manager(&store);
  if (auto s = manager.Recover(); !s.ok())
    return Fail("run", kExitRuntimeError, std::string(s.message()));
  manager.ReleaseRestoredLeases();  // the workers that held them ran inside the previous `run`
  // Resume the newest unfinished study of this store, else start a new one.
  std::string study_id;
  for (const auto& s : manager.List()) {
    if (s.state() != v1::STUDY_STATE_FINISHED && s.state() != v1::STUDY_STATE_CANCELLED &&
        s.state() != v1::STUDY_STATE_FAILED) {
      study_id = s.study_id();
    }
  }
  if (study_id.empty()) {
    auto id = manager.Submit(*normalized);
    if (!id.ok()) return Fail("run", kExitUsageError, std::string(id.status().message()));
    study_id = *id;
    std::printf("Study %s: %d trials on %s (store %s)\n", study_id.c_str(), normalized->n_trials(),
                normalized->model().c_str(), store_dir.c_str());
  } else {
    std::printf("Resuming study %s (store %s)\n", study_id.c_str(), store_dir.c_str());
  }
  std::fflush(stdout);

  coordinator::ServerOptions server_options;
  std::random_device rd;
  server_options.token = std::to_string(rd()) + std::to_string(rd());
  auto server = coordinator::CoordinatorServer::Start(&manager, server_options);
  if (!server.ok()) return Fail("run", kExitRuntimeError, std::string(server.status().message()));
  InstallSignalHandlers();
  std::atomic<bool> workers_stop{false};
  std::vector<std::thread> pool;
  for (int i = 0; i < n_workers; ++i) {
    pool.emplace_back([&, i] {
      worker::WorkerOptions options;
      options.link.coordinator = "127.0.0.1:" + std::to_string((*server)->port());
      options.link.token = server_options.token;
      options.trials_per_batch = normalized->trials_per_lease();
      options.threads = static_cast<int>(threads->value_or(0));
      options.device = *device;
      if (args.Get("dtype")) options.dtype = *dtype;
      options.link.wait_seconds = 1;
      options.link.stop = &workers_stop;
      try {
        worker::TrialWorker w(options);
        if (auto s = w.Run(); !s.ok())
          std::fprintf(stderr, "worker %d: %s\n", i, std::string(s.message()).c_str());
      } catch (const std::exception& e) {
        std::fprintf(stderr, "worker %d: error: %s\n", i, e.what());
      }
    });
  }
  const auto start = std::chrono::steady_clock::now();
  int last_done = -1;
  v1::StudyDetail detail;
  while (true) {
    auto got = manager.Get(study_id);
    if (!got.ok()) break;
    detail = *got;
    const auto& sum = detail.summary();
    // Failed trials are replaced, so progress is the completed ones.
    const int done = sum.completed_trials();
    if (done + sum.failed_trials() != last_done) {
      last_done = done + sum.failed_trials();
      const double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::string best = "-";
      if (!detail.pareto_front().empty()) {
        const v1::Trial& t = detail.trials(static_cast<int>(detail.pareto_front(0)));
        char buf[96];
        std::snprintf(buf, sizeof(buf), "%d/%d refusals (KL %.4f)", t.scores().refusals(),
                      t.scores().refusal_prompts(), t.scores().kl_divergence());
        best = buf;
      }
      const double eta = done > 0 ? elapsed / done * (sum.spec().n_trials() - done) : 0;
      std::printf("[%s] trial %d/%d  elapsed %.0fs  ETA %s  baseline %d refusals  best %s\n",
                  StateName(sum.state()), done, sum.spec().n_trials(), elapsed,
                  done > 0 ? (std::to_string(static_cast<int>(eta)) + "s").c_str() : "?",
                  sum.baseline_refusals(), best.c_str());
      std::fflush(stdout);
    }
    if (sum.state() == v1::STUDY_STATE_FINISHED || sum.state() == v1::STUDY_STATE_FAILED ||
        sum.state() == v1::STUDY_STATE_CANCELLED || g_stop) {
      break;
    }
    manager.WaitForChange(std::chrono::milliseconds(1000));
  }
  workers_stop = true;
  if (g_stop) {
    std::printf(
        "\nInterrupted. Everything finished so far is saved in %s; run the same command again to "
        "resume.\n",
        store_dir.c_str());
    std::fflush(stdout);
    std::_Exit(130);  // workers may be mid-trial; their leases simply expire
  }
  for (auto& t : pool) t.join();
  (*server)->Shutdown();
  if (detail.summary().state() == v1::STUDY_STATE_FAILED) {
    return Fail("run", kExitRuntimeError, "study failed: " + detail.summary().error());
  }
  PrintParetoTable(detail);
  if (!detail.pareto_front().empty()) {
    std::printf(
        "\nTo save a trial at full precision (add --format both for a PEFT adapter too):\n"
        "  schism export --study %s/%s --trial %lld --dest DIR\n",
        store_dir.c_str(), study_id.c_str(), static_cast<long long>(detail.pareto_front(0)));
  }
  return kExitOk;
}

}  // namespace schism::cli
