// The gRPC face of the coordinator: StudyService and WorkerService over a StudyManager, with
// the shared-token check and request size limits. Transport only; the logic is StudyManager's.
#ifndef SCHISM_COORDINATOR_COORDINATOR_SERVER_H_
#define SCHISM_COORDINATOR_COORDINATOR_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "coordinator/study_manager.h"

namespace grpc {
class ChannelCredentials;
class Server;
class Service;
}  // namespace grpc

namespace schism::coordinator {

struct ServerOptions {
  std::string listen = "127.0.0.1:0";  // port 0 picks a free port
  std::string token;                   // empty: no authentication (loopback use only)
  int max_message_bytes = 4 << 20;
  std::string tls_cert_file, tls_key_file;  // both set: TLS
  std::string client_ca_file;               // set (with TLS): mTLS, client certificates required
};

// Client credentials for talking to a coordinator: insecure without `ca_file`; TLS with it;
// mutual TLS when `cert_file` and `key_file` are given too. Unreadable files are errors.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ClientCredentials(
    const std::string& ca_file, const std::string& cert_file, const std::string& key_file);

// Compares in time independent of where the strings differ.
bool ConstantTimeEquals(const std::string& a, const std::string& b);

class CoordinatorServer {
 public:
  // Starts serving `manager` (which must outlive the server).
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Start(StudyManager* manager,
                                                                  const ServerOptions& options);
  ~CoordinatorServer();
  int port() const { return port_; }
  void Shutdown();

 private:
  CoordinatorServer() = default;
  std::unique_ptr<grpc::Service> study_service_, worker_service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace schism::coordinator

#endif  // SCHISM_COORDINATOR_COORDINATOR_SERVER_H_
