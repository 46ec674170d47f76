#include "worker/coordinator_link.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <mutex>
#include <thread>

#include "common/connection_hint.h"

namespace schism::worker {
namespace {

absl::Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

class HeartbeatThread : public CoordinatorLink::Heartbeat {
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
  ~HeartbeatThread() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  bool lost() override {
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

common::ParameterValues TrialParameterValues(const v1::Trial& trial) {
  common::ParameterValues values;
  for (const auto& [name, value] : trial.params().values()) {
    switch (value.value_case()) {
      case v1::ParamValue::kFloatValue:
        values[name] = value.float_value();
        break;
      case v1::ParamValue::kIntValue:
        values[name] = static_cast<double>(value.int_value());
        break;
      case v1::ParamValue::kCategoricalValue:
        values[name] = value.categorical_value();
        break;
      default:
        break;
    }
  }
  return values;
}

std::string TrialParamsJson(const v1::Trial& trial) {
  return common::ParameterValuesToJson(TrialParameterValues(trial));
}

CoordinatorLink::CoordinatorLink(LinkOptions options)
    : options_(std::move(options)),
      channel_(grpc::CreateChannel(options_.coordinator, options_.credentials
                                                             ? options_.credentials
                                                             : grpc::InsecureChannelCredentials())),
      stub_(v1::WorkerService::NewStub(channel_)),
      backoff_(std::chrono::milliseconds(200), std::chrono::milliseconds(5000), ::getpid()) {}

CoordinatorLink::~CoordinatorLink() = default;

std::unique_ptr<grpc::ClientContext> CoordinatorLink::Context(int seconds) const {
  auto c = std::make_unique<grpc::ClientContext>();
  if (!options_.token.empty()) c->AddMetadata("authorization", "Bearer " + options_.token);
  c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  return c;
}

void CoordinatorLink::LogUnreachable(const grpc::Status& s) {
  // Once per distinct failure, not once per retry: a worker that can never connect (a wrong CA,
  // a certificate for another name) says why instead of retrying in silence.
  if (s.error_message() == unreachable_logged_) return;
  unreachable_logged_ = s.error_message();
  std::fprintf(stderr, "schism worker: cannot reach the coordinator at %s: %s%s; retrying\n",
               options_.coordinator.c_str(), s.error_message().c_str(),
               common::ConnectionHint(s.error_message()).c_str());
}

void CoordinatorLink::Pause() {
  const auto delay = backoff_.NextDelay();
  for (auto waited = std::chrono::milliseconds(0); waited < delay && !stopping();
       waited += std::chrono::milliseconds(50)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

absl::StatusOr<std::optional<v1::WorkItem>> CoordinatorLink::Next(int capacity,
                                                                  const std::string& loaded_model,
                                                                  int exit_after_idle_polls,
                                                                  bool peek) {
  int idle_polls = 0;
  while (!stopping()) {
    if (worker_id_.empty()) {
      v1::RegisterRequest req;
      char host[256] = {0};
      ::gethostname(host, sizeof(host) - 1);
      req.set_host(host);
      req.set_device(options_.role == v1::WORKER_ROLE_EXPORT ? "export" : options_.device);
      v1::RegisterResponse resp;
      auto c = Context(10);
      const grpc::Status s = stub_->Register(c.get(), req, &resp);
      if (s.error_code() == grpc::StatusCode::UNAUTHENTICATED) return FromGrpc(s);
      if (!s.ok()) {
        LogUnreachable(s);
        Pause();
        continue;
      }
      worker_id_ = resp.worker_id();
      backoff_.Reset();
    }
    v1::AcquireWorkRequest acquire;
    acquire.set_worker_id(worker_id_);
    acquire.set_capacity(capacity);
    acquire.set_loaded_model(loaded_model);
    acquire.set_wait_seconds(options_.wait_seconds);
    acquire.set_role(options_.role);
    acquire.set_peek(peek);
    v1::WorkItem item;
    auto c = Context(options_.wait_seconds + 10);
    const grpc::Status s = stub_->AcquireWork(c.get(), acquire, &item);
    if (s.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {  // coordinator restarted
      worker_id_.clear();
      continue;
    }
    if (!s.ok()) {
      LogUnreachable(s);
      Pause();
      continue;
    }
    unreachable_logged_.clear();
    backoff_.Reset();
    if (!item.lease_id().empty() || (peek && !item.study_id().empty()))
      return std::optional<v1::WorkItem>(std::move(item));
    if (exit_after_idle_polls > 0 && ++idle_polls >= exit_after_idle_polls) break;
  }
  return std::optional<v1::WorkItem>();
}

std::unique_ptr<CoordinatorLink::Heartbeat> CoordinatorLink::StartHeartbeat(
    const v1::WorkItem& item) {
  const std::string lease_id = item.lease_id();
  return std::make_unique<HeartbeatThread>(
      [this, lease_id] {
        v1::HeartbeatRequest req;
        req.set_worker_id(worker_id_);
        req.set_lease_id(lease_id);
        v1::HeartbeatResponse resp;
        auto hc = Context(10);
        return stub_->Heartbeat(hc.get(), req, &resp);
      },
      std::chrono::milliseconds(std::max(200, item.spec().lease_seconds() * 1000 / 3)));
}

absl::Status CoordinatorLink::Report(const v1::WorkItem& item, v1::ReportResultRequest report) {
  report.set_worker_id(worker_id_);
  report.set_lease_id(item.lease_id());
  grpc::Status rs;
  for (int attempt = 0; attempt < 5; ++attempt) {
    v1::ReportResultResponse resp;
    auto rc = Context(30);
    rs = stub_->ReportResult(rc.get(), report, &resp);
    if (rs.ok() || rs.error_code() != grpc::StatusCode::UNAVAILABLE) break;
    Pause();
  }
  if (!rs.ok())
    std::fprintf(stderr, "schism worker: report refused: %s\n", rs.error_message().c_str());
  return FromGrpc(rs);
}

void CoordinatorLink::Fail(const v1::WorkItem& item, const std::string& reason, bool permanent) {
  SendFailure(item, reason, permanent, /*worker_lost=*/false);
  std::fprintf(stderr, "schism worker: lease %s failed: %s\n", item.lease_id().c_str(),
               reason.c_str());
}

void CoordinatorLink::ReturnLost(const v1::WorkItem& item, const std::string& reason) {
  SendFailure(item, reason, /*permanent=*/false, /*worker_lost=*/true);
  std::fprintf(stderr, "schism worker: lease %s returned (this worker broke): %s\n",
               item.lease_id().c_str(), reason.c_str());
}

void CoordinatorLink::SendFailure(const v1::WorkItem& item, const std::string& reason,
                                  bool permanent, bool worker_lost) {
  v1::ReportFailureRequest req;
  req.set_worker_id(worker_id_);
  req.set_lease_id(item.lease_id());
  req.set_reason(reason);
  req.set_permanent(permanent);
  req.set_worker_lost(worker_lost);
  v1::ReportResultResponse resp;
  auto fc = Context(10);
  stub_->ReportFailure(fc.get(), req, &resp);
}

absl::StatusOr<std::string> CoordinatorLink::FetchArtifact(const std::string& study_id) {
  v1::FetchArtifactRequest req;
  req.set_study_id(study_id);
  auto fc = Context(60);
  auto reader = stub_->FetchArtifact(fc.get(), req);
  std::string bytes;
  v1::ArtifactChunk chunk;
  while (reader->Read(&chunk)) bytes += chunk.data();
  if (auto s = FromGrpc(reader->Finish()); !s.ok()) return s;
  return bytes;
}

}  // namespace schism::worker
