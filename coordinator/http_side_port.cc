#include "coordinator/http_side_port.h"

#include <httplib.h>

#include "schism/proto_json.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "coordinator/coordinator_server.h"

// The dashboard page and Chart.js, embedded at build time (paths from CMake).
#define SCHISM_EMBED(name, path)                                                                 \
  asm(".section .rodata\n.balign 16\n.global " #name "_begin\n" #name "_begin:\n.incbin \"" path \
      "\"\n.global " #name "_end\n" #name "_end:\n.byte 0\n.previous\n")
SCHISM_EMBED(schism_dashboard_html, SCHISM_DASHBOARD_HTML);
SCHISM_EMBED(schism_chart_js, SCHISM_CHART_JS);
extern "C" const char schism_dashboard_html_begin[], schism_dashboard_html_end[];
extern "C" const char schism_chart_js_begin[], schism_chart_js_end[];

namespace schism::coordinator {
namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// "STUDY_STATE_RUNNING" -> "running".
template <typename Enum>
std::string StateLabel(Enum value, const std::string& (*name)(Enum), const std::string& prefix) {
  std::string n = name(value);
  if (absl::StartsWith(n, prefix)) n = n.substr(prefix.size());
  return Lower(n);
}

template <typename Enum>
void Gauge(std::string* out, const std::string& metric, const std::string& help,
           const std::map<Enum, int>& counts, const std::vector<Enum>& states,
           const std::string& (*name)(Enum), const std::string& prefix) {
  absl::StrAppend(out, "# HELP ", metric, " ", help, "\n# TYPE ", metric, " gauge\n");
  for (Enum s : states) {
    auto it = counts.find(s);
    absl::StrAppend(out, metric, "{state=\"", StateLabel(s, name, prefix), "\"} ",
                    it == counts.end() ? 0 : it->second, "\n");
  }
}

}  // namespace

std::string PrometheusText(const ManagerMetrics& m) {
  std::string out;
  Gauge(&out, "schism_studies", "Studies by state.", m.studies,
        {v1::STUDY_STATE_QUEUED, v1::STUDY_STATE_PREPARING, v1::STUDY_STATE_RUNNING,
         v1::STUDY_STATE_FINISHED, v1::STUDY_STATE_CANCELLED, v1::STUDY_STATE_FAILED},
        &v1::StudyState_Name<v1::StudyState>, "STUDY_STATE_");
  Gauge(&out, "schism_trials", "Trials of all studies by state.", m.trials,
        {v1::TRIAL_STATE_WAITING, v1::TRIAL_STATE_RUNNING, v1::TRIAL_STATE_COMPLETE,
         v1::TRIAL_STATE_FAILED},
        &v1::TrialState_Name<v1::TrialState>, "TRIAL_STATE_");
  Gauge(&out, "schism_exports", "Exports by state.", m.exports,
        {v1::EXPORT_STATE_QUEUED, v1::EXPORT_STATE_RUNNING, v1::EXPORT_STATE_DONE,
         v1::EXPORT_STATE_FAILED},
        &v1::ExportState_Name<v1::ExportState>, "EXPORT_STATE_");
  absl::StrAppend(
      &out, "# HELP schism_leases_active Work items leased to workers now.\n",
      "# TYPE schism_leases_active gauge\nschism_leases_active ", m.active_leases, "\n",
      "# HELP schism_workers_registered Workers registered since the coordinator started.\n",
      "# TYPE schism_workers_registered gauge\nschism_workers_registered ", m.registered_workers,
      "\n",
      "# HELP schism_store_errors_total Journal records the study store refused (each logged).\n",
      "# TYPE schism_store_errors_total counter\nschism_store_errors_total ", m.store_errors, "\n");
  return out;
}

absl::StatusOr<std::unique_ptr<HttpSidePort>> HttpSidePort::Start(StudyManager* manager,
                                                                  const std::string& listen,
                                                                  const std::string& token) {
  const size_t colon = listen.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("--http \"", listen, "\": expected HOST:PORT"));
  }
  const std::string host = listen.substr(0, colon);
  std::unique_ptr<HttpSidePort> side(new HttpSidePort());
  side->server_ = std::make_unique<httplib::Server>();
  httplib::Server& s = *side->server_;
  HttpSidePort* self = side.get();
  auto authorized = [token](const httplib::Request& req, httplib::Response& res) {
    if (token.empty() ||
        ConstantTimeEquals(req.get_header_value("Authorization"), "Bearer " + token))
      return true;
    res.status = 401;
    res.set_content("missing or wrong token (Authorization: Bearer <token>)\n", "text/plain");
    return false;
  };
  s.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  s.Get("/readyz", [self](const httplib::Request&, httplib::Response& res) {
    if (self->ready_) {
      res.set_content("ready\n", "text/plain");
    } else {
      res.status = 503;
      res.set_content("starting\n", "text/plain");
    }
  });
  s.Get("/metrics", [manager](const httplib::Request&, httplib::Response& res) {
    res.set_content(PrometheusText(manager->Metrics()), "text/plain; version=0.0.4");
  });
  s.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(std::string(schism_dashboard_html_begin, schism_dashboard_html_end),
                    "text/html; charset=utf-8");
  });
  s.Get("/chart.js", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(std::string(schism_chart_js_begin, schism_chart_js_end),
                    "application/javascript");
  });
  s.Get("/api/studies", [manager, authorized](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    v1::ListStudiesResponse list;
    for (auto& summary : manager->List()) *list.add_studies() = std::move(summary);
    res.set_content(ProtoJson(list), "application/json");
  });
  s.Get(R"(/api/studies/([A-Za-z0-9_-]+))",
        [manager, authorized](const httplib::Request& req, httplib::Response& res) {
          if (!authorized(req, res)) return;
          auto detail = manager->Get(req.matches[1]);
          if (!detail.ok()) {
            res.status = 404;
            res.set_content(std::string(detail.status().message()) + "\n", "text/plain");
            return;
          }
          res.set_content(ProtoJson(*detail), "application/json");
        });
  side->port_ = port == 0 ? s.bind_to_any_port(host) : (s.bind_to_port(host, port) ? port : -1);
  if (side->port_ < 0)
    return absl::UnavailableError(absl::StrCat("--http ", listen, ": cannot bind"));
  side->thread_ = std::thread([self] { self->server_->listen_after_bind(); });
  return side;
}

HttpSidePort::~HttpSidePort() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace schism::coordinator
