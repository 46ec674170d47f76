// `schism export` (locally from a study folder or a params file, or through a coordinator) and
// `schism export-worker` (takes Export work from a coordinator).
#ifndef SCHISM_CLI_EXPORT_COMMANDS_H_
#define SCHISM_CLI_EXPORT_COMMANDS_H_

#include <string>
#include <vector>


namespace schism::cli {

int RunExport(const std::vector<std::string>& argv);

}  // namespace schism::cli

#endif  // SCHISM_CLI_EXPORT_COMMANDS_H_
