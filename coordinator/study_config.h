// Study configuration files (TOML, Heretic's keys and meanings; docs/architecture.md#configuration)
// to StudySpec.
#ifndef SCHISM_COORDINATOR_STUDY_CONFIG_H_
#define SCHISM_COORDINATOR_STUDY_CONFIG_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "schism/v1/study.pb.h"

namespace schism::coordinator {

// Parses TOML text; `where` names the file in errors. Every key of Heretic 1.4.0's Settings and
// of master's scorer tables either takes Heretic's meaning and default or is refused with an
// error that names it and says why; nothing is accepted and ignored. Unknown keys, wrong types
// and malformed TOML are errors naming the key (and line). Unset orthogonalize_direction means
// true.
absl::StatusOr<v1::StudySpec> StudySpecFromToml(const std::string& text, const std::string& where);
absl::StatusOr<v1::StudySpec> StudySpecFromTomlFile(const std::string& path);

// The top-level keys a config may hold (for tests and `--help`).
std::vector<std::string> StudyConfigKeys();

}  // namespace schism::coordinator

#endif  // SCHISM_COORDINATOR_STUDY_CONFIG_H_
