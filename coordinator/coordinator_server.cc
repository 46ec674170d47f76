#include "coordinator/coordinator_server.h"

#include <grpcpp/grpcpp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "schism/v1/coordinator.grpc.pb.h"

namespace schism::coordinator {
namespace {

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

// Checks "authorization: Bearer <token>" when the server has a token.
grpc::Status Authorize(grpc::ServerContext* context, const std::string& token) {
  if (token.empty()) return grpc::Status::OK;
  const auto& metadata = context->client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "missing authorization token");
  }
  const std::string presented(it->second.data(), it->second.size());
  if (!ConstantTimeEquals(presented, "Bearer " + token)) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "wrong authorization token");
  }
  return grpc::Status::OK;
}

class StudyServiceImpl final : public v1::StudyService::Service {
 public:
  StudyServiceImpl(StudyManager* manager, std::string token)
      : m_(manager), token_(std::move(token)) {}

  grpc::Status SubmitStudy(grpc::ServerContext* c, const v1::SubmitStudyRequest* req,
                           v1::SubmitStudyResponse* resp) override {
    if (auto a = Authorize(c, token_); !a.ok()) return a;
    auto id = m_->Submit(req->spec());
    if (!id.ok()) return ToGrpc(id.status());
    resp->set_study_id(*id);
    return grpc::Status::OK;
  }
  grpc::Status ListStudies(grpc::ServerContext* c, const v1::ListStudiesRequest* req,
                           v1::ListStudiesResponse* resp) override {
    if (auto a = Authorize(c, token_); !a.ok()) return a;
    auto page = m_->ListPage(*req);
    if (!page.ok()) return ToGrpc(page.status());
    *resp = std::move(*page);
    return grpc::Status::OK;
  }
  grpc::Status GetStudy(grpc::ServerContext* c, const v1::GetStudyRequest* req,
                        v1::StudyDetail* resp) override {
    if (auto a = Authorize(c, token_); !a.ok()) return a;
    auto detail = m_->Get(req->study_id());
    if (!detail.ok()) return ToGrpc(detail.status());
    *resp = std::move(*detail);
    return grpc::Status::OK;
  }
  grpc::Status WatchStudy(grpc::ServerContext* c, const v1::GetStudyRequest* req,
                          grpc::ServerWriter<v1::StudySummary>* writer) override {
    if (auto a = Authorize(c, token_); !a.ok()) return a;
    std::string last;
    while (!c->IsCancelled()) {
      auto detail = m_->Get(req->study_id());
      if (!detail.ok()) return ToGrpc(detail.status());
      const v1::StudySummary& summary = detail->summary();
      const std::string bytes = summary.SerializeAsString();
      if (bytes != last) {
        if (!writer->Write(summary)) break;
        last = bytes;
      }
      const auto state = summary.state();
      if (state == v1::STUDY_STATE_FINISHED || state == v1::STUDY_STATE_FAILED ||
          state == v1::STUDY_STATE_CANCELLED) {
        break;
      }
      m_->WaitForChange(std::chrono::milliseconds(500));
    }
    return grpc::Status::OK;
  }
  grpc::Status CancelStudy(grpc::ServerContext* c, const v1::CancelStudyRequest* req,
                           v1::StudySummary* resp) override {
    if (auto a = Authorize(c, token_); !a.ok()) return a;
    auto summary = m_->Cancel(req->study_id());
    if (!summary.ok()) return ToGrpc(summary.status());
    *resp = std::move(*summary);
    return grpc::Status::OK;
  }
  grpc::Status RequestExport(grpc::ServerContext* c, const v1::RequestExportRequest* req,
                             v1::ExportJob* resp) override {
    if (auto a = Authorize(c, token_); !a.ok()) return a;
    auto job = m_->RequestExport(*req);
    if (!job.ok()) return ToGrpc(job.status());
    *resp = std::move(*job);
    return grpc::Status::OK;
  }
  grpc::Status GetExport(grpc::ServerContext* c, const v1::GetExportRequest* req,
                         v1::ExportJob* resp) override {
    if (auto a = Authorize(c, token_); !a.ok()) return a;
    auto job = m_->GetExport(req->export_id());
    if (!job.ok()) return ToGrpc(job.status());
    *resp = std::move(*job);
    return grpc::Status::OK;
  }

 private:
  StudyManager* m_;
  std::string token_;
};

class WorkerServiceImpl final : public v1::WorkerService::Service {
 public:
  WorkerServiceImpl(StudyManager* manager, std::string token)
      : m_(manager), token_(std::move(token)) {}

  grpc::Status Register(grpc::ServerContext* c, const v1::RegisterRequest* req,
                        v1::RegisterResponse* resp) override {
    if (auto a = Authorize(c, token_); !a.ok()) return a;
    resp->set_worker_id(m_->RegisterWorker(*req));
    return grpc::Status::OK;
  }
  grpc::Status AcquireWork(grpc::ServerContext* c, const v1::AcquireWorkRequest* req,
                           v1::WorkItem* resp) override {
    if (auto a = Authorize(c, token_); !a.ok()) return a;
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::seconds(std::clamp(req->wait_seconds(), 0, 30));
    while (true) {
      auto item = m_->Acquire(*req);
      if (!item.ok()) return ToGrpc(item.status());
      // A lease, or a peek's answer (a study without a lease), ends the long poll.
      if (!item->lease_id().empty() || !item->study_id().empty() ||
          std::chrono::steady_clock::now() >= deadline || c->IsCancelled()) {
        *resp = std::move(*item);
        return grpc::Status::OK;
      }
      m_->WaitForChange(std::chrono::milliseconds(500));
    }
  }
  grpc::Status Heartbeat(grpc::ServerContext* c, const v1::HeartbeatRequest* req,
                         v1::HeartbeatResponse* resp) override {
    if (auto a = Authorize(c, token_); !a.ok()) return a;
    auto deadline = m_->Heartbeat(req->worker_id(), req->lease_id());
    if (!deadline.ok()) return ToGrpc(deadline.status());
    resp->set_lease_deadline_unix_ms(*deadline);
    return grpc::Status::OK;
  }
  grpc::Status ReportResult(grpc::ServerContext* c, const v1::ReportResultRequest* req,
                            v1::ReportResultResponse*) override {
    if (auto a = Authorize(c, token_); !a.ok()) return a;
    return ToGrpc(m_->Report(*req));
  }
  grpc::Status ReportFailure(grpc::ServerContext* c, const v1::ReportFailureRequest* req,
                             v1::ReportResultResponse*) override {
    if (auto a = Authorize(c, token_); !a.ok()) return a;
    return ToGrpc(m_->ReportFailure(*req));
  }
  grpc::Status FetchArtifact(grpc::ServerContext* c, const v1::FetchArtifactRequest* req,
                             grpc::ServerWriter<v1::ArtifactChunk>* writer) override {
    if (auto a = Authorize(c, token_); !a.ok()) return a;
    auto bytes = m_->Artifact(req->study_id());
    if (!bytes.ok()) return ToGrpc(bytes.status());
    constexpr size_t kChunk = 1 << 20;
    for (size_t pos = 0; pos < bytes->size() || pos == 0; pos += kChunk) {
      v1::ArtifactChunk chunk;
      chunk.set_data(bytes->substr(pos, kChunk));
      chunk.set_total_bytes(static_cast<int64_t>(bytes->size()));
      if (!writer->Write(chunk)) break;
      if (bytes->empty()) break;
    }
    return grpc::Status::OK;
  }

 private:
  StudyManager* m_;
  std::string token_;
};

absl::StatusOr<std::string> ReadWhole(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot read"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string AsnTimeText(const ASN1_TIME* time) {
  BIO* bio = BIO_new(BIO_s_mem());
  ASN1_TIME_print(bio, time);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string text(data, static_cast<size_t>(std::max(0L, n)));
  BIO_free(bio);
  return text;
}

// A certificate this side presents (the server's, or a worker's client certificate) must be
// within its validity: gRPC would load an expired one, and every handshake would then fail with
// nothing but UNAVAILABLE on the other side.
absl::StatusOr<std::string> ReadCertificate(const std::string& path) {
  auto pem = ReadWhole(path);
  if (!pem.ok()) return pem.status();
  BIO* bio = BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size()));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (cert == nullptr)
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a PEM certificate"));
  absl::Status status;
  if (X509_cmp_current_time(X509_get0_notAfter(cert)) <= 0) {
    status = absl::FailedPreconditionError(
        absl::StrCat(path, ": the certificate expired on ", AsnTimeText(X509_get0_notAfter(cert))));
  } else if (X509_cmp_current_time(X509_get0_notBefore(cert)) >= 0) {
    status = absl::FailedPreconditionError(absl::StrCat(
        path, ": the certificate is not valid before ", AsnTimeText(X509_get0_notBefore(cert))));
  }
  X509_free(cert);
  if (!status.ok()) return status;
  return pem;
}

}  // namespace

bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? a[i] : 0, y = i < b.size() ? b[i] : 0;
    diff |= x ^ y;
  }
  return diff == 0;
}

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(
    StudyManager* manager, const ServerOptions& options) {
  std::unique_ptr<CoordinatorServer> server(new CoordinatorServer());
  server->study_service_ = std::make_unique<StudyServiceImpl>(manager, options.token);
  server->worker_service_ = std::make_unique<WorkerServiceImpl>(manager, options.token);
  grpc::ServerBuilder builder;
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (!options.tls_cert_file.empty() || !options.tls_key_file.empty()) {
    auto key = ReadWhole(options.tls_key_file);
    auto cert = ReadCertificate(options.tls_cert_file);
    if (!key.ok()) return key.status();
    if (!cert.ok()) return cert.status();
    grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    if (!options.client_ca_file.empty()) {
      auto ca = ReadWhole(options.client_ca_file);
      if (!ca.ok()) return ca.status();
      ssl = grpc::SslServerCredentialsOptions(
          GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
      ssl.pem_root_certs = *ca;
    }
    ssl.pem_key_cert_pairs.push_back({*key, *cert});
    credentials = grpc::SslServerCredentials(ssl);
  } else if (!options.client_ca_file.empty()) {
    return absl::InvalidArgumentError("a client CA (mTLS) needs --tls-cert and --tls-key too");
  }
  builder.AddListeningPort(options.listen, credentials, &server->port_);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.RegisterService(server->study_service_.get());
  builder.RegisterService(server->worker_service_.get());
  server->server_ = builder.BuildAndStart();
  if (!server->server_ || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen));
  }
  return server;
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ClientCredentials(
    const std::string& ca_file, const std::string& cert_file, const std::string& key_file) {
  if (ca_file.empty()) {
    if (!cert_file.empty() || !key_file.empty()) {
      return absl::InvalidArgumentError("a client certificate needs --tls-ca too");
    }
    return grpc::InsecureChannelCredentials();
  }
  grpc::SslCredentialsOptions ssl;
  auto ca = ReadWhole(ca_file);
  if (!ca.ok()) return ca.status();
  ssl.pem_root_certs = *ca;
  if (!cert_file.empty() || !key_file.empty()) {
    auto cert = ReadCertificate(cert_file);
    auto key = ReadWhole(key_file);
    if (!cert.ok()) return cert.status();
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *cert;
    ssl.pem_private_key = *key;
  }
  return grpc::SslCredentials(ssl);
}

void CoordinatorServer::Shutdown() {
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
}

CoordinatorServer::~CoordinatorServer() { Shutdown(); }

}  // namespace schism::coordinator
