// The embedded study store: one directory per study under a root,
//   <root>/<study_id>/journal.log      append-only records
//   <root>/<study_id>/directions.bin   the study's artifact (written to a temp file, renamed)
// Record format (little-endian): u32 payload length, u32 FNV-1a-32 of the payload, payload.
// Every append is fsync'd. A crash can leave a torn last record (short header, short payload
// or checksum mismatch); replay stops there, ignores it and truncates it away, so the next
// append starts on a clean boundary.
#ifndef SCHISM_COORDINATOR_JOURNAL_STORE_H_
#define SCHISM_COORDINATOR_JOURNAL_STORE_H_

#include <map>
#include <mutex>
#include <string>

#include "coordinator/study_store.h"

namespace schism::coordinator {

class JournalStore : public StudyStore {
 public:
  explicit JournalStore(std::string root) : root_(std::move(root)) {}
  ~JournalStore() override;

  absl::Status Append(const std::string& study_id, const std::string& record) override;
  absl::StatusOr<std::map<std::string, std::vector<std::string>>> ReplayAll() override;
  absl::Status PutArtifact(const std::string& study_id, const std::string& bytes) override;
  absl::StatusOr<std::string> GetArtifact(const std::string& study_id) override;

  // Records of one journal file; sets *valid_bytes to the length of the intact prefix.
  static absl::StatusOr<std::vector<std::string>> ReadJournal(const std::string& path,
                                                              size_t* valid_bytes);

 private:
  std::string root_;
  std::mutex mu_;
  std::map<std::string, int> fds_;  // open journal per study
};

}  // namespace schism::coordinator

#endif  // SCHISM_COORDINATOR_JOURNAL_STORE_H_
