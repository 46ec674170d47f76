#include "cli/cluster_support.h"

#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "coordinator/coordinator_server.h"

namespace schism::cli {

std::atomic<bool> g_stop{false};

namespace {
void HandleSignal(int) { g_stop = true; }
}  // namespace

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

std::string OtherScoresText(const v1::TrialScores& s) {
  std::string out;
  if (s.judge_prompts() > 0) {
    if (!s.judge_error().empty()) {
      out += ", Judge: no verdict (" + s.judge_error() + ")";
    } else if (s.has_judge_refusals()) {
      out += absl::StrCat(", Judge: ", s.judge_refusals(), "/", s.judge_prompts());
      if (s.judge_unclear() > 0) out += absl::StrCat(" (", s.judge_unclear(), " unclear)");
    }
  }
  if (s.has_perplexity()) out += absl::StrFormat(", Perplexity: %.3f", s.perplexity());
  return out;
}

void PrintParetoTable(const v1::StudyDetail& detail) {
  std::printf("\nPareto-optimal trials (refusals, KL divergence):\n");
  const std::string baseline = OtherScoresText(detail.summary().baseline());
  if (!baseline.empty()) std::printf("  [Baseline ] %s\n", baseline.substr(2).c_str());
  for (int64_t number : detail.pareto_front()) {
    const v1::Trial& t = detail.trials(static_cast<int>(number));
    std::printf("  [Trial %3lld] Refusals: %3d/%d, KL divergence: %.4f%s\n",
                static_cast<long long>(number), t.scores().refusals(), t.scores().refusal_prompts(),
                t.scores().kl_divergence(), OtherScoresText(t.scores()).c_str());
  }
}

std::unique_ptr<grpc::ClientContext> StudyClient::Context() const {
  auto c = std::make_unique<grpc::ClientContext>();
  if (!token.empty()) c->AddMetadata("authorization", "Bearer " + token);
  c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  return c;
}

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

}  // namespace schism::cli
