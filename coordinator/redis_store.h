// The study store on Redis (hiredis). The coordinator is the only writer. Key layout:
//   schism:studies                  SET of study ids
//   schism:study:<id>:log           STREAM; each entry has a field "r" holding a record (JSON) and
//                                   a field "n", the append's nonce: when the connection breaks
//                                   after an XADD went out, the stream's last entry says whether
//                                   it was written (so a durable record is never reported failed)
//   schism:study:<id>:artifact      STRING; the study's directions artifact
// Entries are appended with XADD and replayed with XRANGE - +, so the log keeps its order.
// Durability is Redis's own (run it with appendonly yes / appendfsync always for journal-grade
// guarantees).
#ifndef SCHISM_COORDINATOR_REDIS_STORE_H_
#define SCHISM_COORDINATOR_REDIS_STORE_H_

#include <cstdint>
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
  std::string nonce_prefix_;  // random, per process
  uint64_t appends_ = 0;
};

}  // namespace schism::coordinator

#endif  // SCHISM_COORDINATOR_REDIS_STORE_H_
