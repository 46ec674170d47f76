// The coordinator's HTTP side port (docs/architecture.md#http-side-port), next to its gRPC port:
//   GET /healthz             200 "ok" while the process serves
//   GET /readyz              200 once the store is replayed and gRPC serves, else 503
//   GET /metrics             Prometheus text: studies, trials and exports by state, leases, workers
//   GET /                    the dashboard (studies, live Pareto plot, trial table), Chart.js
//                            from Debian's libjs-chart.js embedded in the binary at build time
//   GET /chart.js            that Chart.js
//   GET /api/studies         ListStudies as JSON
//   GET /api/studies/<id>    GetStudy as JSON (trials, Pareto front)
// Probes and metrics are open (kubelet and Prometheus carry no token); with a cluster token the
// /api routes need "Authorization: Bearer <token>" (the dashboard sends the token given in its
// URL as ?token=...), since study specs name models and prompt files.
#ifndef SCHISM_COORDINATOR_HTTP_SIDE_PORT_H_
#define SCHISM_COORDINATOR_HTTP_SIDE_PORT_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "coordinator/study_manager.h"

namespace httplib {
class Server;
}

namespace schism::coordinator {

// Prometheus text exposition of `m` (what /metrics serves).
std::string PrometheusText(const ManagerMetrics& m);

class HttpSidePort {
 public:
  // Binds `listen` ("host:port"; port 0 picks a free one) and serves on a thread.
  static absl::StatusOr<std::unique_ptr<HttpSidePort>> Start(StudyManager* manager,
                                                             const std::string& listen,
                                                             const std::string& token);
  ~HttpSidePort();
  int port() const { return port_; }
  void SetReady(bool ready) { ready_ = ready; }

 private:
  HttpSidePort() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::atomic<bool> ready_{false};
  int port_ = 0;
};

}  // namespace schism::coordinator

#endif  // SCHISM_COORDINATOR_HTTP_SIDE_PORT_H_
