#include "coordinator/journal_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/checksum.h"

namespace schism::coordinator {
namespace {

bool ValidStudyId(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) return false;
  }
  return true;
}

absl::Status WriteAll(int fd, const char* data, size_t n, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return absl::DataLossError(absl::StrCat(path, ": write failed: ", std::strerror(errno)));
    }
    data += w;
    n -= static_cast<size_t>(w);
  }
  return absl::OkStatus();
}

}  // namespace

JournalStore::~JournalStore() {
  for (auto& [id, fd] : fds_) ::close(fd);
}

absl::Status JournalStore::Append(const std::string& study_id, const std::string& record) {
  if (!ValidStudyId(study_id))
    return absl::InvalidArgumentError(absl::StrCat("bad study id \"", study_id, "\""));
  std::lock_guard<std::mutex> lock(mu_);
  auto it = fds_.find(study_id);
  const std::string dir = absl::StrCat(root_, "/", study_id);
  const std::string path = dir + "/journal.log";
  if (it == fds_.end()) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return absl::PermissionDeniedError(absl::StrCat(dir, ": ", ec.message()));
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return absl::PermissionDeniedError(absl::StrCat(path, ": ", std::strerror(errno)));
    it = fds_.emplace(study_id, fd).first;
  }
  std::string frame(8, '\0');
  const uint32_t len = static_cast<uint32_t>(record.size());
  const uint32_t sum = common::Fnv1a32(record.data(), record.size());
  std::memcpy(frame.data(), &len, 4);
  std::memcpy(frame.data() + 4, &sum, 4);
  frame += record;
  if (auto s = WriteAll(it->second, frame.data(), frame.size(), path); !s.ok()) return s;
  if (::fsync(it->second) != 0) return absl::DataLossError(absl::StrCat(path, ": fsync failed"));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> JournalStore::ReadJournal(const std::string& path,
                                                                   size_t* valid_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string data = ss.str();
  std::vector<std::string> records;
  size_t pos = 0;
  while (pos + 8 <= data.size()) {
    uint32_t len, sum;
    std::memcpy(&len, data.data() + pos, 4);
    std::memcpy(&sum, data.data() + pos + 4, 4);
    if (pos + 8 + len > data.size()) break;                         // torn: payload cut short
    if (common::Fnv1a32(data.data() + pos + 8, len) != sum) break;  // torn or corrupt
    records.emplace_back(data, pos + 8, len);
    pos += 8 + len;
  }
  *valid_bytes = pos;
  return records;
}

absl::StatusOr<std::map<std::string, std::vector<std::string>>> JournalStore::ReplayAll() {
  std::map<std::string, std::vector<std::string>> out;
  std::error_code ec;
  if (!std::filesystem::exists(root_, ec)) return out;
  for (const auto& entry : std::filesystem::directory_iterator(root_, ec)) {
    const std::string id = entry.path().filename().string();
    const std::string path = entry.path().string() + "/journal.log";
    if (!entry.is_directory() || !ValidStudyId(id) || !std::filesystem::exists(path)) continue;
    size_t valid = 0;
    auto records = ReadJournal(path, &valid);
    if (!records.ok()) return records.status();
    if (valid != std::filesystem::file_size(path)) std::filesystem::resize_file(path, valid);
    out[id] = std::move(*records);
  }
  if (ec) return absl::PermissionDeniedError(absl::StrCat(root_, ": ", ec.message()));
  return out;
}

absl::Status JournalStore::PutArtifact(const std::string& study_id, const std::string& bytes) {
  if (!ValidStudyId(study_id)) return absl::InvalidArgumentError("bad study id");
  const std::string dir = absl::StrCat(root_, "/", study_id);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  const std::string tmp = dir + "/directions.bin.tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::PermissionDeniedError(absl::StrCat(tmp, ": ", std::strerror(errno)));
  absl::Status s = WriteAll(fd, bytes.data(), bytes.size(), tmp);
  if (s.ok() && ::fsync(fd) != 0) s = absl::DataLossError(absl::StrCat(tmp, ": fsync failed"));
  ::close(fd);
  if (!s.ok()) return s;
  std::filesystem::rename(tmp, dir + "/directions.bin", ec);
  if (ec) return absl::DataLossError(absl::StrCat(dir, ": rename failed: ", ec.message()));
  return absl::OkStatus();
}

absl::StatusOr<std::string> JournalStore::GetArtifact(const std::string& study_id) {
  if (!ValidStudyId(study_id)) return absl::InvalidArgumentError("bad study id");
  std::ifstream in(absl::StrCat(root_, "/", study_id, "/directions.bin"), std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("study ", study_id, " has no artifact yet"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace schism::coordinator
