// The gRPC coordinator over real loopback sockets: authentication, hostile input, stale leases.
#include "coordinator/coordinator_server.h"

#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <thread>

#include "common/connection_hint.h"
#include "common/formats/arrow_column.h"
#include "coordinator/journal_store.h"
#include "schism/v1/coordinator.grpc.pb.h"
#include "tests/test_support.h"

namespace schism::coordinator {
namespace {

class CoordinatorServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::make_unique<JournalStore>(testing_support::MakeTempDir("server"));
    manager_ = std::make_unique<StudyManager>(store_.get());
    ServerOptions options;
    options.token = "s3cret-token";
    options.max_message_bytes = 64 * 1024;
    auto server = CoordinatorServer::Start(manager_.get(), options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                                   grpc::InsecureChannelCredentials());
    studies_ = v1::StudyService::NewStub(channel_);
    workers_ = v1::WorkerService::NewStub(channel_);
  }

  std::unique_ptr<grpc::ClientContext> Ctx(const std::string& token = "s3cret-token") {
    auto c = std::make_unique<grpc::ClientContext>();
    if (!token.empty()) c->AddMetadata("authorization", "Bearer " + token);
    c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return c;
  }

  bool StillServing() {
    v1::ListStudiesResponse resp;
    return studies_->ListStudies(Ctx().get(), v1::ListStudiesRequest(), &resp).ok();
  }

  std::unique_ptr<JournalStore> store_;
  std::unique_ptr<StudyManager> manager_;
  std::unique_ptr<CoordinatorServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::StudyService::Stub> studies_;
  std::unique_ptr<v1::WorkerService::Stub> workers_;
};

TEST_F(CoordinatorServerTest, MissingOrWrongTokenIsRefused) {
  v1::ListStudiesResponse resp;
  grpc::Status none = studies_->ListStudies(Ctx("").get(), v1::ListStudiesRequest(), &resp);
  EXPECT_EQ(none.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(none.error_message(), "missing authorization token");
  grpc::Status wrong =
      studies_->ListStudies(Ctx("s3cret-tokem").get(), v1::ListStudiesRequest(), &resp);
  EXPECT_EQ(wrong.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(wrong.error_message(), "wrong authorization token");
  v1::RegisterResponse reg;
  EXPECT_EQ(workers_->Register(Ctx("nope").get(), v1::RegisterRequest(), &reg).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(StillServing());
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
}

TEST_F(CoordinatorServerTest, GarbageBytesOnThePortDoNotHurtTheServer) {
  for (int round = 0; round < 3; ++round) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(server_->port()));
    ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    const std::string junk =
        round == 0 ? "GET / HTTP/1.1\r\n\r\n" : std::string(4096, static_cast<char>(0x5a + round));
    ASSERT_GT(::write(fd, junk.data(), junk.size()), 0);
    ::close(fd);
  }
  EXPECT_TRUE(StillServing());
}

TEST_F(CoordinatorServerTest, OversizedAndInvalidRequestsGetSpecificErrors) {
  v1::SubmitStudyRequest big;
  big.mutable_spec()->set_model(std::string(200 * 1024, 'm'));
  v1::SubmitStudyResponse resp;
  EXPECT_EQ(studies_->SubmitStudy(Ctx().get(), big, &resp).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  v1::SubmitStudyRequest invalid;
  invalid.mutable_spec()->set_model("m.gguf");
  invalid.mutable_spec()->set_quantization("int3");
  grpc::Status s = studies_->SubmitStudy(Ctx().get(), invalid, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("quantization"), std::string::npos) << s.error_message();
  v1::GetStudyRequest get;
  get.set_study_id("s-missing");
  v1::StudyDetail detail;
  EXPECT_EQ(studies_->GetStudy(Ctx().get(), get, &detail).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(StillServing());
}

TEST_F(CoordinatorServerTest, ReportsForUnknownOrStaleLeasesAreRefused) {
  v1::SubmitStudyRequest submit;
  submit.mutable_spec()->set_model("m.gguf");
  submit.mutable_spec()->set_lease_seconds(1);
  v1::SubmitStudyResponse submitted;
  ASSERT_TRUE(studies_->SubmitStudy(Ctx().get(), submit, &submitted).ok());
  v1::RegisterResponse reg;
  ASSERT_TRUE(workers_->Register(Ctx().get(), v1::RegisterRequest(), &reg).ok());
  v1::AcquireWorkRequest acquire;
  acquire.set_worker_id(reg.worker_id());
  acquire.set_capacity(1);
  v1::WorkItem item;
  ASSERT_TRUE(workers_->AcquireWork(Ctx().get(), acquire, &item).ok());
  ASSERT_TRUE(item.has_prepare());

  v1::ReportResultRequest unknown;
  unknown.set_worker_id(reg.worker_id());
  unknown.set_lease_id("l-forged");
  v1::ReportResultResponse ack;
  grpc::Status u = workers_->ReportResult(Ctx().get(), unknown, &ack);
  EXPECT_EQ(u.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(u.error_message().find("unknown"), std::string::npos);

  std::this_thread::sleep_for(std::chrono::milliseconds(1300));  // the 1 s lease runs out
  v1::HeartbeatRequest beat;
  beat.set_worker_id(reg.worker_id());
  beat.set_lease_id(item.lease_id());
  v1::HeartbeatResponse beat_resp;
  grpc::Status h = workers_->Heartbeat(Ctx().get(), beat, &beat_resp);
  EXPECT_EQ(h.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(h.error_message().find("expired"), std::string::npos) << h.error_message();
  v1::ReportResultRequest stale;
  stale.set_worker_id(reg.worker_id());
  stale.set_lease_id(item.lease_id());
  stale.set_artifact("x");
  stale.set_num_layers(4);
  grpc::Status st = workers_->ReportResult(Ctx().get(), stale, &ack);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(st.error_message().find("expired"), std::string::npos) << st.error_message();
  // The prepare work is offered again.
  ASSERT_TRUE(workers_->AcquireWork(Ctx().get(), acquire, &item).ok());
  EXPECT_TRUE(item.has_prepare());
  EXPECT_TRUE(StillServing());
}

TEST_F(CoordinatorServerTest, WatchStudyStreamsChangesUntilTheStudyEnds) {
  v1::SubmitStudyRequest submit;
  submit.mutable_spec()->set_model("m.gguf");
  v1::SubmitStudyResponse submitted;
  ASSERT_TRUE(studies_->SubmitStudy(Ctx().get(), submit, &submitted).ok());
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    v1::CancelStudyRequest cancel;
    cancel.set_study_id(submitted.study_id());
    v1::StudySummary summary;
    EXPECT_TRUE(studies_->CancelStudy(Ctx().get(), cancel, &summary).ok());
  });
  v1::GetStudyRequest watch;
  watch.set_study_id(submitted.study_id());
  auto ctx = Ctx();
  auto reader = studies_->WatchStudy(ctx.get(), watch);
  std::vector<v1::StudyState> states;
  v1::StudySummary summary;
  while (reader->Read(&summary)) states.push_back(summary.state());
  EXPECT_TRUE(reader->Finish().ok());
  canceller.join();
  ASSERT_GE(states.size(), 2u);
  EXPECT_EQ(states.front(), v1::STUDY_STATE_QUEUED);
  EXPECT_EQ(states.back(), v1::STUDY_STATE_CANCELLED);
}

// Many clients at once over gRPC, the workload scripts/tsan runs under ThreadSanitizer: 3 studies
// submitted from 3 threads, 8 worker threads racing for their prepare and trial leases (acquire,
// heartbeat, report), and a reader listing and fetching the studies all the while. Every trial
// is reported accepted exactly once and every study finishes with exactly its n_trials.
TEST_F(CoordinatorServerTest, RacingWorkersSubmittersAndReadersCompleteEveryTrialOnce) {
  constexpr int kStudies = 3, kTrials = 12, kWorkers = 8;
  std::vector<std::string> ids(kStudies);
  std::vector<std::thread> submitters;
  for (int s = 0; s < kStudies; ++s) {
    submitters.emplace_back([&, s] {
      v1::SubmitStudyRequest submit;
      submit.mutable_spec()->set_model("m.gguf");
      submit.mutable_spec()->set_n_trials(kTrials);
      submit.mutable_spec()->set_n_startup_trials(4);
      submit.mutable_spec()->set_seed(static_cast<uint32_t>(s));
      v1::SubmitStudyResponse submitted;
      EXPECT_TRUE(studies_->SubmitStudy(Ctx().get(), submit, &submitted).ok());
      ids[s] = submitted.study_id();
    });
  }
  for (std::thread& t : submitters) t.join();

  std::atomic<bool> done{false};
  std::mutex accepted_mu;
  std::map<std::pair<std::string, int64_t>, int> accepted;  // (study, trial) -> accepted reports
  std::atomic<int> refused{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, w] {
      v1::RegisterResponse reg;
      ASSERT_TRUE(workers_->Register(Ctx().get(), v1::RegisterRequest(), &reg).ok());
      while (!done) {
        v1::AcquireWorkRequest acquire;
        acquire.set_worker_id(reg.worker_id());
        acquire.set_capacity(1 + w % 2);
        v1::WorkItem item;
        if (!workers_->AcquireWork(Ctx().get(), acquire, &item).ok() || item.lease_id().empty()) {
          std::this_thread::sleep_for(std::chrono::milliseconds(2));
          continue;
        }
        v1::HeartbeatRequest beat;
        beat.set_worker_id(reg.worker_id());
        beat.set_lease_id(item.lease_id());
        v1::HeartbeatResponse beat_resp;
        EXPECT_TRUE(workers_->Heartbeat(Ctx().get(), beat, &beat_resp).ok());
        v1::ReportResultRequest report;
        report.set_worker_id(reg.worker_id());
        report.set_lease_id(item.lease_id());
        if (item.has_prepare()) {
          report.set_artifact("directions");
          report.set_num_layers(4);
          report.set_baseline_refusals(10);
        }
        for (const v1::Trial& trial : item.evaluate().trials()) {
          v1::TrialResult* result = report.add_results();
          result->set_number(trial.number());
          result->mutable_scores()->set_refusals(static_cast<int>(trial.number() % 7));
          result->mutable_scores()->set_refusal_prompts(10);
          result->mutable_scores()->set_kl_divergence(0.1 *
                                                      static_cast<double>(trial.number() + 1));
        }
        v1::ReportResultResponse ack;
        if (!workers_->ReportResult(Ctx().get(), report, &ack).ok()) {
          ++refused;
          continue;
        }
        std::lock_guard<std::mutex> lock(accepted_mu);
        for (const v1::Trial& trial : item.evaluate().trials())
          ++accepted[{item.study_id(), trial.number()}];
      }
    });
  }
  std::thread reader([&] {
    while (!done) {
      v1::ListStudiesResponse listed;
      EXPECT_TRUE(studies_->ListStudies(Ctx().get(), v1::ListStudiesRequest(), &listed).ok());
      for (const std::string& id : ids) {
        v1::GetStudyRequest get;
        get.set_study_id(id);
        v1::StudyDetail detail;
        EXPECT_TRUE(studies_->GetStudy(Ctx().get(), get, &detail).ok());
      }
    }
  });
  auto all_finished = [&] {
    for (const std::string& id : ids) {
      v1::GetStudyRequest get;
      get.set_study_id(id);
      v1::StudyDetail detail;
      if (!studies_->GetStudy(Ctx().get(), get, &detail).ok() ||
          detail.summary().state() != v1::STUDY_STATE_FINISHED)
        return false;
    }
    return true;
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!all_finished() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  done = true;
  for (std::thread& t : workers) t.join();
  reader.join();

  int unique = 0, duplicates = 0;
  for (const auto& [trial, reports] : accepted) {
    ++unique;
    duplicates += reports - 1;
  }
  std::printf(
      "racing clients: studies %d, asked %d, accepted unique %d, duplicates %d, refused %d\n",
      kStudies, kStudies * kTrials, unique, duplicates, refused.load());
  EXPECT_EQ(unique, kStudies * kTrials);
  EXPECT_EQ(duplicates, 0);
  for (const std::string& id : ids) {
    v1::GetStudyRequest get;
    get.set_study_id(id);
    v1::StudyDetail detail;
    ASSERT_TRUE(studies_->GetStudy(Ctx().get(), get, &detail).ok());
    EXPECT_EQ(detail.summary().state(), v1::STUDY_STATE_FINISHED) << id;
    EXPECT_EQ(detail.summary().completed_trials(), kTrials) << id;
    int complete = 0;
    for (const v1::Trial& t : detail.trials()) complete += t.state() == v1::TRIAL_STATE_COMPLETE;
    EXPECT_EQ(complete, kTrials) << id;
  }
}

// A CA, a server certificate for localhost and a client certificate, made with openssl.
std::string MakeCertificates() {
  const std::string dir = testing_support::MakeTempDir("tls");
  const std::string script =
      "cd " + dir +
      " && "
      "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj "
      "/CN=schism-test-ca && "
      "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost "
      "&& "
      "printf 'subjectAltName=DNS:localhost' > san.ext && "
      "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem "
      "-days 2 -extfile san.ext && "
      "openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=worker && "
      "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem "
      "-days 2";
  EXPECT_EQ(std::system((script + " >/dev/null 2>&1").c_str()), 0) << "openssl failed";
  return dir;
}

TEST(CoordinatorTls, MutualTlsAcceptsCertifiedClientsAndRefusesOthers) {
  const std::string certs = MakeCertificates();
  JournalStore store(testing_support::MakeTempDir("tls_store"));
  StudyManager manager(&store);
  ServerOptions options;
  options.listen = "localhost:0";
  options.tls_cert_file = certs + "/server.pem";
  options.tls_key_file = certs + "/server.key";
  options.client_ca_file = certs + "/ca.pem";
  auto server = CoordinatorServer::Start(&manager, options);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string target = "localhost:" + std::to_string((*server)->port());
  auto call = [&](const std::string& cert, const std::string& key) {
    auto credentials = ClientCredentials(certs + "/ca.pem", cert, key);
    EXPECT_TRUE(credentials.ok()) << credentials.status();
    auto stub = v1::StudyService::NewStub(grpc::CreateChannel(target, *credentials));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ListStudiesResponse resp;
    return stub->ListStudies(&context, v1::ListStudiesRequest(), &resp);
  };
  EXPECT_TRUE(call(certs + "/client.pem", certs + "/client.key").ok());
  EXPECT_FALSE(call("", "").ok()) << "a client without a certificate must be refused";
  auto plaintext =
      v1::StudyService::NewStub(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::ListStudiesResponse resp;
  EXPECT_FALSE(plaintext->ListStudies(&context, v1::ListStudiesRequest(), &resp).ok());
  EXPECT_FALSE(ClientCredentials(certs + "/missing.pem", "", "").ok());
}

// libparquet (pyarrow's) carries its own OpenSSL and exports it: loaded the wrong way it would
// interpose on the libssl gRPC uses. After reading a Parquet file, mutual TLS still works.
TEST(CoordinatorTls, MutualTlsStillWorksAfterAParquetFileWasRead) {
  if (!formats::ArrowColumnsSupported()) GTEST_SKIP() << "this build has no Apache Arrow";
  const std::string dir = testing_support::MakeTempDir("tls_parquet");
  ASSERT_EQ(std::system(("python3 -c \"import pyarrow as pa, pyarrow.parquet as pq; "
                         "pq.write_table(pa.table({'text': ['a', 'b']}), '" +
                         dir + "/p.parquet')\"")
                            .c_str()),
            0);
  auto rows = formats::ReadParquetStringColumn(dir + "/p.parquet", "text");
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(*rows, (std::vector<std::string>{"a", "b"}));
  const std::string certs = MakeCertificates();
  JournalStore store(testing_support::MakeTempDir("tls_parquet_store"));
  StudyManager manager(&store);
  ServerOptions options;
  options.listen = "localhost:0";
  options.tls_cert_file = certs + "/server.pem";
  options.tls_key_file = certs + "/server.key";
  options.client_ca_file = certs + "/ca.pem";
  auto server = CoordinatorServer::Start(&manager, options);
  ASSERT_TRUE(server.ok()) << server.status();
  auto credentials =
      ClientCredentials(certs + "/ca.pem", certs + "/client.pem", certs + "/client.key");
  ASSERT_TRUE(credentials.ok()) << credentials.status();
  auto stub = v1::StudyService::NewStub(
      grpc::CreateChannel("localhost:" + std::to_string((*server)->port()), *credentials));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::ListStudiesResponse resp;
  const grpc::Status status = stub->ListStudies(&context, v1::ListStudiesRequest(), &resp);
  EXPECT_TRUE(status.ok()) << status.error_message();
}

// TLS misuse, each against a real mutual-TLS coordinator on loopback: a client that trusts
// another CA, a server certificate for another host name, a client certificate from a CA the
// server does not trust, an expired client certificate (signed by the right CA, its validity
// ended yesterday), and plaintext. Each call is refused (UNAVAILABLE: no handshake), and
// the coordinator keeps serving a correctly configured client afterwards.
TEST(CoordinatorTls, MisconfiguredClientsAndCertificatesAreRefusedAndTheServerKeepsServing) {
  const std::string certs = MakeCertificates();
  const std::string script =
      "cd " + certs +
      " && "
      "openssl req -x509 -newkey rsa:2048 -nodes -keyout other-ca.key -out other-ca.pem -days 2 "
      "-subj /CN=other-ca && "
      "openssl req -newkey rsa:2048 -nodes -keyout rogue.key -out rogue.csr -subj /CN=rogue && "
      "openssl x509 -req -in rogue.csr -CA other-ca.pem -CAkey other-ca.key -CAcreateserial -out "
      "rogue.pem -days 2 && "
      "openssl req -newkey rsa:2048 -nodes -keyout elsewhere.key -out elsewhere.csr -subj "
      "/CN=elsewhere.example && "
      "printf 'subjectAltName=DNS:elsewhere.example' > elsewhere.ext && "
      "openssl x509 -req -in elsewhere.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out "
      "elsewhere.pem -days 2 "
      "-extfile elsewhere.ext && "
      "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out "
      "expired-server.pem -days -1 -extfile san.ext && "
      "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out "
      "expired-client.pem -days -1";
  ASSERT_EQ(std::system((script + " >/dev/null 2>&1").c_str()), 0) << "openssl failed";
  auto start = [&](const std::string& cert, const std::string& key, StudyManager* manager) {
    ServerOptions options;
    options.listen = "localhost:0";
    options.tls_cert_file = certs + "/" + cert;
    options.tls_key_file = certs + "/" + key;
    options.client_ca_file = certs + "/ca.pem";
    auto server = CoordinatorServer::Start(manager, options);
    EXPECT_TRUE(server.ok()) << server.status();
    return std::move(*server);
  };
  JournalStore store(testing_support::MakeTempDir("tls_misuse_store"));
  StudyManager manager(&store);
  auto good = start("server.pem", "server.key", &manager);
  auto misnamed =
      start("elsewhere.pem", "elsewhere.key", &manager);  // valid, but not for "localhost"
  // An expired certificate of its own is refused at start, naming the file and the date; a worker
  // refuses its own expired client certificate the same way.
  ServerOptions expired_options;
  expired_options.listen = "localhost:0";
  expired_options.tls_cert_file = certs + "/expired-server.pem";
  expired_options.tls_key_file = certs + "/server.key";
  auto expired = CoordinatorServer::Start(&manager, expired_options);
  ASSERT_FALSE(expired.ok());
  EXPECT_NE(expired.status().message().find("expired-server.pem: the certificate expired on"),
            std::string::npos)
      << expired.status();
  auto expired_own =
      ClientCredentials(certs + "/ca.pem", certs + "/expired-client.pem", certs + "/client.key");
  ASSERT_FALSE(expired_own.ok());
  EXPECT_NE(expired_own.status().message().find("expired-client.pem: the certificate expired"),
            std::string::npos)
      << expired_own.status();
  auto call = [&](int port, const std::string& ca, const std::string& cert,
                  const std::string& key) {
    auto credentials = ClientCredentials(certs + "/" + ca, cert.empty() ? "" : certs + "/" + cert,
                                         key.empty() ? "" : certs + "/" + key);
    EXPECT_TRUE(credentials.ok()) << credentials.status();
    auto stub = v1::StudyService::NewStub(
        grpc::CreateChannel("localhost:" + std::to_string(port), *credentials));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ListStudiesResponse resp;
    return stub->ListStudies(&context, v1::ListStudiesRequest(), &resp);
  };
  const int port = good->port();
  const grpc::Status wrong_ca = call(port, "other-ca.pem", "client.pem", "client.key");
  EXPECT_EQ(wrong_ca.error_code(), grpc::StatusCode::UNAVAILABLE)
      << "a client trusting another CA: " << wrong_ca.error_message();
  const grpc::Status rogue = call(port, "ca.pem", "rogue.pem", "rogue.key");
  EXPECT_EQ(rogue.error_code(), grpc::StatusCode::UNAVAILABLE)
      << "a client certificate from an untrusted CA: " << rogue.error_message();
  const grpc::Status wrong_host = call(misnamed->port(), "ca.pem", "client.pem", "client.key");
  EXPECT_EQ(wrong_host.error_code(), grpc::StatusCode::UNAVAILABLE)
      << "a server certificate for another name: " << wrong_host.error_message();
  // What the CLI and the worker print beside gRPC's words (common/connection_hint.h): the cause
  // where the client can know it, what to check where only the server knows it.
  auto hint = [](const grpc::Status& s) { return common::ConnectionHint(s.error_message()); };
  EXPECT_NE(hint(wrong_ca).find("not signed by the CA this side trusts (--tls-ca)"),
            std::string::npos)
      << wrong_ca.error_message();
  EXPECT_NE(hint(wrong_host).find("issued for another name"), std::string::npos)
      << wrong_host.error_message();
  EXPECT_NE(hint(rogue).find("--tls-cert/--tls-key signed by its CA"), std::string::npos)
      << rogue.error_message();
  // A client that presents an expired certificate anyway (not schism's worker) is refused.
  grpc::SslCredentialsOptions expired_client_ssl;
  expired_client_ssl.pem_root_certs = testing_support::ReadFile(certs + "/ca.pem");
  expired_client_ssl.pem_cert_chain = testing_support::ReadFile(certs + "/expired-client.pem");
  expired_client_ssl.pem_private_key = testing_support::ReadFile(certs + "/client.key");
  {
    auto stub = v1::StudyService::NewStub(grpc::CreateChannel(
        "localhost:" + std::to_string(port), grpc::SslCredentials(expired_client_ssl)));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ListStudiesResponse resp;
    const grpc::Status expired_client = stub->ListStudies(&context, {}, &resp);
    EXPECT_EQ(expired_client.error_code(), grpc::StatusCode::UNAVAILABLE)
        << "an expired client certificate: " << expired_client.error_message();
  }
  auto plaintext = v1::StudyService::NewStub(
      grpc::CreateChannel("localhost:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::ListStudiesResponse resp;
  const grpc::Status plain = plaintext->ListStudies(&context, v1::ListStudiesRequest(), &resp);
  EXPECT_EQ(plain.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(hint(plain).find("a TLS coordinator needs --tls-ca"), std::string::npos)
      << plain.error_message();
  const grpc::Status after = call(port, "ca.pem", "client.pem", "client.key");
  EXPECT_TRUE(after.ok()) << "the coordinator must keep serving: " << after.error_message();
}

}  // namespace
}  // namespace schism::coordinator
