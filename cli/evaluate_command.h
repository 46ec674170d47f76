// `schism evaluate`: refusal and KL scores of the unmodified model or of one parameter set.
#ifndef SCHISM_CLI_EVALUATE_COMMAND_H_
#define SCHISM_CLI_EVALUATE_COMMAND_H_

#include <string>
#include <vector>

namespace schism::cli {

int RunEvaluate(const std::vector<std::string>& argv);

}  // namespace schism::cli

#endif  // SCHISM_CLI_EVALUATE_COMMAND_H_
