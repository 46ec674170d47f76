#include "coordinator/study_folder.h"

#include <filesystem>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "coordinator/journal_store.h"
#include "coordinator/study_manager.h"

namespace schism::coordinator {
namespace {

namespace fs = std::filesystem;

// A StudyStore over one study folder that refuses every write.
class ReadOnlyStudyFolder : public StudyStore {
 public:
  explicit ReadOnlyStudyFolder(fs::path dir) : dir_(std::move(dir)) {}
  std::string id() const { return dir_.filename().string(); }

  absl::Status Append(const std::string&, const std::string&) override { return ReadOnly(); }
  absl::StatusOr<std::map<std::string, std::vector<std::string>>> ReplayAll() override {
    size_t valid = 0;
    auto records = JournalStore::ReadJournal((dir_ / "journal.log").string(), &valid);
    if (!records.ok()) return records.status();
    return std::map<std::string, std::vector<std::string>>{{id(), std::move(*records)}};
  }
  absl::Status PutArtifact(const std::string&, const std::string&) override { return ReadOnly(); }
  absl::StatusOr<std::string> GetArtifact(const std::string&) override {
    return absl::UnimplementedError("read the artifact from StudyDirectionsPath");
  }

 private:
  absl::Status ReadOnly() const {
    return absl::FailedPreconditionError(absl::StrCat(dir_.string(), " is opened read-only"));
  }
  fs::path dir_;
};

}  // namespace

absl::StatusOr<v1::StudyDetail> ReadStudyFolder(const std::string& dir) {
  fs::path path = fs::path(dir).lexically_normal();
  if (path.filename().empty()) path = path.parent_path();
  std::error_code ec;
  if (!fs::is_regular_file(path / "journal.log", ec)) {
    return absl::NotFoundError(absl::StrCat(dir, ": not a study folder (no journal.log)"));
  }
  ReadOnlyStudyFolder store(path);
  StudyManager manager(&store);
  if (auto s = manager.Recover(); !s.ok()) return s;
  return manager.Get(store.id());
}

std::string StudyDirectionsPath(const std::string& dir) {
  return (fs::path(dir) / "directions.bin").string();
}

}  // namespace schism::coordinator
