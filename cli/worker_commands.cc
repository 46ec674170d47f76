// The commands that run models against a coordinator: worker, export-worker, and `run` (an
// embedded coordinator with local workers).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cli/args.h"
#include "cli/cluster_support.h"
#include "cli/commands.h"
#include "cli/tensor_parallel_launch.h"
#include "common/env.h"
#include "common/prompt_set.h"
#include "coordinator/coordinator_server.h"
#include "coordinator/journal_store.h"
#include "coordinator/study_config.h"
#include "coordinator/study_manager.h"
#include "worker/export_worker.h"
#include "worker/runtime/device.h"
#include "worker/trial_worker.h"

#ifndef SCHISM_SOURCE_DIR
#error "SCHISM_SOURCE_DIR must be defined by the build"
#endif

namespace schism::cli {

bool ModelRuntimeLinked() { return true; }

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
