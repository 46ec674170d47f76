// `schism tpe-replay SPACE.json TOLD.jsonl [--seed S] [--constant-liar]`.
#ifndef SCHISM_CLI_TPE_REPLAY_COMMAND_H_
#define SCHISM_CLI_TPE_REPLAY_COMMAND_H_

#include <string>
#include <vector>

namespace schism::cli {

int RunTpeReplay(const std::vector<std::string>& argv);

}  // namespace schism::cli

#endif  // SCHISM_CLI_TPE_REPLAY_COMMAND_H_
