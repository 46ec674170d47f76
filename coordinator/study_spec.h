// A study's spec as the coordinator accepts it: defaults filled in (prompt sets under the data
// directory, Heretic's numbers) and every field validated, errors naming the field.
#ifndef SCHISM_COORDINATOR_STUDY_SPEC_H_
#define SCHISM_COORDINATOR_STUDY_SPEC_H_

#include <cstddef>

#include "absl/status/statusor.h"
#include "schism/v1/study.pb.h"

namespace schism::coordinator {

// A study spec is at most this large serialized (prompt sets are files, not inline text), so
// every message that carries it (a work item, a listing page) fits gRPC's 4 MiB default.
inline constexpr size_t kMaxStudySpecBytes = 256 << 10;

// Fills defaults and validates; the result is what a study runs with and journals.
absl::StatusOr<v1::StudySpec> NormalizeStudySpec(v1::StudySpec spec);

}  // namespace schism::coordinator

#endif  // SCHISM_COORDINATOR_STUDY_SPEC_H_
