// The study store on Redis (hiredis). The coordinator is the only writer. Key layout:
//   schism:studies                  SET of study ids
//   schism:study:<id>:log           STREAM; each entry has one field "r" holding a record (JSON)
//   schism:study:<id>:artifact      STRING; the study's directions artifact
// Entries are appended with XADD and replayed with XRANGE - +, so the log keeps its order.
// Durability is Redis's own (run it with appendonly yes / appendfsync always for journal-grade
// guarantees).
#ifndef SCHISM_COORDINATOR_REDIS_STORE_H_
#define SCHISM_COORDINATOR_REDIS_STORE_H_

#include <memory>
#include <mutex>
#include <string>

#include "coordinator/study_store.h"

struct redisContext;

namespace schism::coordinator {

class RedisStore : public StudyStore {
 public:
  // `url` is redis://host:port[/db]. Fails when Redis cannot be reached.
  static absl::StatusOr<std::unique_ptr<RedisStore>> Connect(const std::string& url);
  ~RedisStore() override;

  absl::Status Append(const std::string& study_id, const std::string& record) override;
  absl::StatusOr<std::map<std::string, std::vector<std::string>>> ReplayAll() override;
  absl::Status PutArtifact(const std::string& study_id, const std::string& bytes) override;
  absl::StatusOr<std::string> GetArtifact(const std::string& study_id) override;

 private:
  RedisStore() = default;
  absl::Status EnsureConnected();

  std::string host_;
  int port_ = 6379;
  int db_ = 0;
  std::mutex mu_;
  redisContext* ctx_ = nullptr;
};

}  // namespace schism::coordinator

#endif  // SCHISM_COORDINATOR_REDIS_STORE_H_
