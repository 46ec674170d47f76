// Reads one study of the embedded journal store (<root>/<study_id>/) without a coordinator and
// without writing to it, so it is safe while a coordinator appends: `schism export --study DIR`.
#ifndef SCHISM_COORDINATOR_STUDY_FOLDER_H_
#define SCHISM_COORDINATOR_STUDY_FOLDER_H_

#include <string>

#include "absl/status/statusor.h"
#include "schism/v1/study.pb.h"

namespace schism::coordinator {

// The study as GetStudy would return it. A torn last record is ignored, not truncated.
absl::StatusOr<v1::StudyDetail> ReadStudyFolder(const std::string& dir);

// <dir>/directions.bin, the study's refusal directions.
std::string StudyDirectionsPath(const std::string& dir);

}  // namespace schism::coordinator

#endif  // SCHISM_COORDINATOR_STUDY_FOLDER_H_
