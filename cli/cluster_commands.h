// The cluster subcommands: run (embedded), coordinator, worker, export-worker, submit, status,
// trials, and export through a coordinator.
#ifndef SCHISM_CLI_CLUSTER_COMMANDS_H_
#define SCHISM_CLI_CLUSTER_COMMANDS_H_

#include <string>
#include <vector>

namespace schism::cli {

int RunEmbedded(const std::vector<std::string>& argv);  // `schism run`
int RunCoordinator(const std::vector<std::string>& argv);
int RunWorker(const std::vector<std::string>& argv);
int RunExportWorker(const std::vector<std::string>& argv);
// `schism export STUDY TRIAL --coordinator H:P ...`: queues the export and waits for it.
int RunRemoteExport(const std::vector<std::string>& argv);
int RunSubmit(const std::vector<std::string>& argv);
int RunStatus(const std::vector<std::string>& argv);
int RunTrials(const std::vector<std::string>& argv);

}  // namespace schism::cli

#endif  // SCHISM_CLI_CLUSTER_COMMANDS_H_
