#include "worker/trial_worker.h"

#include <grpcpp/grpcpp.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/model/device.h"
#include "common/model/directions.h"
#include "common/model/response_prefix.h"
#include "common/model/trial_evaluator.h"
#include "common/prompt_set.h"
#include "schism/v1/coordinator.grpc.pb.h"
#include "worker/reconnect_backoff.h"

namespace schism::worker {
namespace {

absl::Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

std::string ParamsJson(const v1::Trial& trial) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, value] : trial.params().values()) {
    switch (value.value_case()) {
      case v1::ParamValue::kFloatValue: j[name] = value.float_value(); break;
      case v1::ParamValue::kIntValue: j[name] = value.int_value(); break;
      case v1::ParamValue::kCategoricalValue: j[name] = value.categorical_value(); break;
      default: break;
    }
  }
  return j.dump();
}

// Sends heartbeats for a lease every `period` until destroyed; remembers if the lease was lost.
class HeartbeatThread {
 public:
  HeartbeatThread(std::function<grpc::Status()> beat, std::chrono::milliseconds period)
      : thread_([this, beat = std::move(beat), period] {
          std::unique_lock<std::mutex> lock(mu_);
          while (!cv_.wait_for(lock, period, [this] { return done_; })) {
            lock.unlock();
            const grpc::Status s = beat();
            lock.lock();
            if (s.error_code() == grpc::StatusCode::FAILED_PRECONDITION) lost_ = true;
          }
        }) {}
  ~HeartbeatThread() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  bool lost() {
    std::lock_guard<std::mutex> lock(mu_);
    return lost_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false, lost_ = false;
  std::thread thread_;
};

}  // namespace

struct TrialWorker::State {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::WorkerService::Stub> stub;
  std::string worker_id;
  // Loaded model and the evaluator of the study it serves.
  std::string model_key;
  std::unique_ptr<model::LoadedModel> model;
  std::string evaluator_study;
  std::unique_ptr<model::TrialEvaluator> evaluator;
};

TrialWorker::TrialWorker(WorkerOptions options) : options_(std::move(options)), state_(std::make_unique<State>()) {}
TrialWorker::~TrialWorker() = default;

absl::Status TrialWorker::Run() {
  State& st = *state_;
  st.channel = grpc::CreateChannel(options_.coordinator, options_.credentials ? options_.credentials
                                                                                : grpc::InsecureChannelCredentials());
  st.stub = v1::WorkerService::NewStub(st.channel);
  model::SetComputeThreads(options_.threads);
  auto context = [&](int seconds) {
    auto c = std::make_unique<grpc::ClientContext>();
    if (!options_.token.empty()) c->AddMetadata("authorization", "Bearer " + options_.token);
    c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
    return c;
  };
  auto stopping = [&] { return options_.stop != nullptr && options_.stop->load(); };
  ReconnectBackoff backoff(std::chrono::milliseconds(200), std::chrono::milliseconds(5000), ::getpid());
  auto pause = [&] {
    const auto delay = backoff.NextDelay();
    for (auto waited = std::chrono::milliseconds(0); waited < delay && !stopping(); waited += std::chrono::milliseconds(50)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  };

  int idle_polls = 0;
  while (!stopping()) {
    if (st.worker_id.empty()) {
      v1::RegisterRequest req;
      char host[256] = {0};
      ::gethostname(host, sizeof(host) - 1);
      req.set_host(host);
      req.set_device("cpu");
      v1::RegisterResponse resp;
      auto c = context(10);
      const grpc::Status s = st.stub->Register(c.get(), req, &resp);
      if (s.error_code() == grpc::StatusCode::UNAUTHENTICATED) return FromGrpc(s);
      if (!s.ok()) {
        pause();
        continue;
      }
      st.worker_id = resp.worker_id();
      backoff.Reset();
    }
    v1::AcquireWorkRequest acquire;
    acquire.set_worker_id(st.worker_id);
    acquire.set_capacity(options_.trials_per_batch);
    acquire.set_loaded_model(st.model ? st.model_key.substr(0, st.model_key.find('|')) : "");
    acquire.set_wait_seconds(options_.wait_seconds);
    v1::WorkItem item;
    auto c = context(options_.wait_seconds + 10);
    const grpc::Status s = st.stub->AcquireWork(c.get(), acquire, &item);
    if (s.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {  // coordinator restarted
      st.worker_id.clear();
      continue;
    }
    if (!s.ok()) {
      pause();
      continue;
    }
    backoff.Reset();
    if (item.lease_id().empty()) {
      if (options_.exit_after_idle_polls > 0 && ++idle_polls >= options_.exit_after_idle_polls) break;
      continue;
    }
    idle_polls = 0;

    v1::StudySpec spec = item.spec();
    HeartbeatThread heartbeat(
        [&] {
          v1::HeartbeatRequest req;
          req.set_worker_id(st.worker_id);
          req.set_lease_id(item.lease_id());
          v1::HeartbeatResponse resp;
          auto hc = context(10);
          return st.stub->Heartbeat(hc.get(), req, &resp);
        },
        std::chrono::milliseconds(std::max(200, spec.lease_seconds() * 1000 / 3)));
    auto fail = [&](const std::string& reason) {
      v1::ReportFailureRequest req;
      req.set_worker_id(st.worker_id);
      req.set_lease_id(item.lease_id());
      req.set_reason(reason);
      v1::ReportResultResponse resp;
      auto fc = context(10);
      st.stub->ReportFailure(fc.get(), req, &resp);
      std::fprintf(stderr, "schism worker: lease %s failed: %s\n", item.lease_id().c_str(), reason.c_str());
    };

    // The model, loaded once per (path, quantization).
    const std::string model_key = spec.model() + "|" + spec.quantization();
    if (!st.model || st.model_key != model_key) {
      st.evaluator.reset();
      st.evaluator_study.clear();
      model::LoadOptions load;
      if (spec.quantization() == "nf4") load.quantization = model::Quantization::kNf4;
      auto loaded = model::LoadModel(spec.model(), load);
      if (!loaded.ok()) {
        fail(std::string(loaded.status().message()));
        st.model.reset();
        continue;
      }
      st.model = std::make_unique<model::LoadedModel>(std::move(*loaded));
      st.model_key = model_key;
    }
    auto prompts = [&](const v1::PromptSet& set) -> absl::StatusOr<std::vector<model::TokenIds>> {
      auto lines = common::LoadPromptLines(set.path(), set.split());
      if (!lines.ok()) return lines.status();
      return model::EncodeChatPrompts(*st.model, *lines, spec.system_prompt(), spec.response_prefix());
    };
    auto make_evaluator = [&](at::Tensor directions) -> absl::StatusOr<std::unique_ptr<model::TrialEvaluator>> {
      auto refusal = prompts(spec.refusal_prompts());
      if (!refusal.ok()) return refusal.status();
      auto kl = prompts(spec.kl_prompts());
      if (!kl.ok()) return kl.status();
      model::EvaluatorOptions options;
      options.max_response_length = spec.max_response_length();
      options.batch_size = spec.batch_size();
      auto mode = model::ParseRowNormalization(spec.row_normalization());
      if (!mode.ok()) return mode.status();
      options.row_normalization = *mode;
      return model::TrialEvaluator::Create(*st.model, std::move(directions), std::move(*refusal), std::move(*kl), options);
    };

    v1::ReportResultRequest report;
    report.set_worker_id(st.worker_id);
    report.set_lease_id(item.lease_id());
    if (item.has_prepare()) {
      const int32_t pad = st.model->tokenizer->spec().pad_id.value_or(0);
      const auto& t = *st.model->transformer;
      if (spec.response_prefix().empty()) {
        // Greedy responses to 100 good + 100 bad prompts; their common start is the prefix.
        auto good_lines = common::LoadPromptLines(spec.good_prompts().path(), "[:100]");
        auto bad_lines = common::LoadPromptLines(spec.bad_prompts().path(), "[:100]");
        if (!good_lines.ok() || !bad_lines.ok()) {
          fail(std::string((good_lines.ok() ? bad_lines.status() : good_lines.status()).message()));
          continue;
        }
        std::vector<std::string> lines = *good_lines;
        lines.insert(lines.end(), bad_lines->begin(), bad_lines->end());
        model::GreedyOptions greedy;
        greedy.max_new_tokens = spec.max_response_length();
        greedy.stop_ids = st.model->stop_ids;
        greedy.pad_id = pad;
        auto encoded = model::EncodeChatPrompts(*st.model, lines, spec.system_prompt(), "");
        if (!encoded.ok()) {
          fail(std::string(encoded.status().message()));
          continue;
        }
        std::string prefix = model::CommonResponsePrefix(t, *st.model->tokenizer, *encoded, greedy);
        const std::string skipped = model::ApplyChainOfThoughtSkip(prefix);
        if (skipped != prefix) {  // a closed thinking block; look again for what follows it
          auto again = model::EncodeChatPrompts(*st.model, lines, spec.system_prompt(), skipped);
          if (again.ok()) prefix = skipped + model::CommonResponsePrefix(t, *st.model->tokenizer, *again, greedy);
        }
        spec.set_response_prefix(prefix);
        report.set_response_prefix(prefix);
      }
      auto good = prompts(spec.good_prompts());
      auto bad = prompts(spec.bad_prompts());
      if (!good.ok() || !bad.ok()) {
        fail(std::string((good.ok() ? bad.status() : good.status()).message()));
        continue;
      }
      at::Tensor directions = model::RefusalDirections(model::ResidualMeans(t, *good, pad, spec.batch_size()),
                                                       model::ResidualMeans(t, *bad, pad, spec.batch_size()),
                                                       spec.orthogonalize_direction());
      auto evaluator = make_evaluator(directions);
      if (!evaluator.ok()) {
        fail(std::string(evaluator.status().message()));
        continue;
      }
      report.set_artifact(model::SerializeDirections(directions));
      report.set_baseline_refusals((*evaluator)->Baseline().refusals);
      report.set_num_layers(t.config().num_layers);
      st.evaluator = std::move(*evaluator);
      st.evaluator_study = item.study_id();
    } else {
      if (st.evaluator_study != item.study_id()) {
        v1::FetchArtifactRequest req;
        req.set_study_id(item.study_id());
        auto fc = context(60);
        auto reader = st.stub->FetchArtifact(fc.get(), req);
        std::string bytes;
        v1::ArtifactChunk chunk;
        while (reader->Read(&chunk)) bytes += chunk.data();
        const grpc::Status fs = reader->Finish();
        auto directions = fs.ok() ? model::ParseDirections(bytes, "study " + item.study_id() + " artifact")
                                  : absl::StatusOr<at::Tensor>(FromGrpc(fs));
        if (!directions.ok()) {
          fail(std::string(directions.status().message()));
          continue;
        }
        auto evaluator = make_evaluator(*directions);
        if (!evaluator.ok()) {
          fail(std::string(evaluator.status().message()));
          continue;
        }
        st.evaluator = std::move(*evaluator);
        st.evaluator_study = item.study_id();
      }
      std::vector<common::TrialParameters> trials;
      for (const v1::Trial& t : item.evaluate().trials()) {
        auto params = common::TrialParametersFromJson(ParamsJson(t));
        if (!params.ok()) break;
        trials.push_back(*params);
      }
      if (static_cast<int>(trials.size()) != item.evaluate().trials_size()) {
        fail("malformed trial parameters in lease");
        continue;
      }
      const auto scores = st.evaluator->Evaluate(trials);
      for (size_t i = 0; i < scores.size(); ++i) {
        v1::TrialResult* r = report.add_results();
        r->set_number(item.evaluate().trials(static_cast<int>(i)).number());
        r->mutable_scores()->set_refusals(scores[i].refusals);
        r->mutable_scores()->set_refusal_prompts(scores[i].refusal_prompts);
        r->mutable_scores()->set_kl_divergence(scores[i].kl_divergence);
      }
    }
    if (heartbeat.lost()) continue;  // the lease went to someone else; the report would be stale
    // Reports are idempotent by lease id, so retrying through a coordinator blip is safe.
    for (int attempt = 0; attempt < 5; ++attempt) {
      v1::ReportResultResponse resp;
      auto rc = context(30);
      const grpc::Status rs = st.stub->ReportResult(rc.get(), report, &resp);
      if (rs.ok() || rs.error_code() != grpc::StatusCode::UNAVAILABLE) {
        if (!rs.ok()) std::fprintf(stderr, "schism worker: report refused: %s\n", rs.error_message().c_str());
        break;
      }
      pause();
    }
  }
  return absl::OkStatus();
}

}  // namespace schism::worker
