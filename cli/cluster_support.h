// What the commands that are or talk to a coordinator share (cluster_commands.cc, the coordinator
// and client commands; worker_commands.cc, the workers and `run`): signal handling, the token and
// TLS flags, a StudyService client, and the study tables they print. Torch-free: the
// schism-coordinator binary links it.
#ifndef SCHISM_CLI_CLUSTER_SUPPORT_H_
#define SCHISM_CLI_CLUSTER_SUPPORT_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "cli/args.h"
#include "schism/v1/coordinator.grpc.pb.h"

namespace schism::cli {

// Set by SIGINT/SIGTERM once InstallSignalHandlers ran: long-running commands end cleanly.
extern std::atomic<bool> g_stop;
void InstallSignalHandlers();

// The first line of --token-file (trailing spaces and CR dropped), or "" without the flag.
absl::StatusOr<std::string> ReadToken(const Args& args);
// --tls-ca / --tls-cert / --tls-key of the client commands (insecure without --tls-ca).
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> Credentials(const Args& args);

// "queued", "running", ... as `schism status` prints them.
const char* StateName(v1::StudyState state);
// ", Judge: 3/100 (2 unclear), Perplexity: 12.345" for the scores of a study's other scorers
// (judge, perplexity) that a trial has; "" when it has none.
std::string OtherScoresText(const v1::TrialScores& scores);
// The Pareto front as `schism run` ends with it (the baseline's other scores first, if any).
void PrintParetoTable(const v1::StudyDetail& detail);

// A StudyService client from --coordinator, --token-file and --tls-ca/--tls-cert/--tls-key.
struct StudyClient {
  std::string token;
  std::unique_ptr<v1::StudyService::Stub> stub;
  // A call context carrying the token, with a 30 s deadline.
  std::unique_ptr<grpc::ClientContext> Context() const;
};
absl::StatusOr<StudyClient> ConnectStudyClient(const Args& args);

}  // namespace schism::cli

#endif  // SCHISM_CLI_CLUSTER_SUPPORT_H_
