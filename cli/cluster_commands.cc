// The coordinator and its client commands: coordinator, submit, status, trials and export through a
// coordinator. Torch-free: the schism-coordinator binary is these and tpe-replay.
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include "schism/proto_json.h"

#include "absl/strings/numbers.h"
#include "cli/args.h"
#include "cli/cluster_support.h"
#include "cli/commands.h"
#include "common/byte_size.h"
#include "common/connection_hint.h"
#include "coordinator/coordinator_server.h"
#include "coordinator/http_side_port.h"
#include "coordinator/journal_store.h"
#include "coordinator/redis_store.h"
#include "coordinator/study_config.h"
#include "coordinator/study_manager.h"

namespace schism::cli {
namespace {

// A failed call's message, with what to check when it names a TLS or connection failure.
std::string RpcError(const grpc::Status& s) {
  return s.error_message() + common::ConnectionHint(s.error_message());
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
    return Fail("export", usage ? kExitUsageError : kExitRuntimeError, RpcError(s));
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
      return Fail("export", kExitRuntimeError, RpcError(s));
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
        RpcError(s));
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
    if (!s.ok()) return Fail("status", kExitRuntimeError, RpcError(s));
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
                RpcError(s));
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
      std::printf("[Trial %3lld] Refusals: %3d/%d, KL divergence: %.4f%s\n",
                  static_cast<long long>(n), t.scores().refusals(), t.scores().refusal_prompts(),
                  t.scores().kl_divergence(), OtherScoresText(t.scores()).c_str());
    } else {
      std::printf("[Trial %3lld] %s\n", static_cast<long long>(n),
                  t.state() == v1::TRIAL_STATE_FAILED ? "failed" : "pending");
    }
  }
  return kExitOk;
}

}  // namespace schism::cli
