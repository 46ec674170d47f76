// Where the coordinator keeps studies: an append-only log of records per study plus artifacts.
// The coordinator is the single writer; a restarted coordinator replays every study's log.
#ifndef SCHISM_COORDINATOR_STUDY_STORE_H_
#define SCHISM_COORDINATOR_STUDY_STORE_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace schism::coordinator {

class StudyStore {
 public:
  virtual ~StudyStore() = default;
  // Appends one record (a JSON object) durably before returning.
  virtual absl::Status Append(const std::string& study_id, const std::string& record) = 0;
  // Every study's records in append order.
  virtual absl::StatusOr<std::map<std::string, std::vector<std::string>>> ReplayAll() = 0;
  virtual absl::Status PutArtifact(const std::string& study_id, const std::string& bytes) = 0;
  virtual absl::StatusOr<std::string> GetArtifact(const std::string& study_id) = 0;
};

}  // namespace schism::coordinator

#endif  // SCHISM_COORDINATOR_STUDY_STORE_H_
