#include "coordinator/redis_store.h"

#include <hiredis/hiredis.h>

#include <charconv>
#include <chrono>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"

namespace schism::coordinator {
namespace {

// Frees a reply when it goes out of scope.
struct Reply {
  redisReply* r;
  explicit Reply(void* p) : r(static_cast<redisReply*>(p)) {}
  ~Reply() {
    if (r != nullptr) freeReplyObject(r);
  }
};

std::string LogKey(const std::string& id) { return "schism:study:" + id + ":log"; }
std::string ArtifactKey(const std::string& id) { return "schism:study:" + id + ":artifact"; }

}  // namespace

absl::StatusOr<std::unique_ptr<RedisStore>> RedisStore::Connect(const std::string& url) {
  const std::string prefix = "redis://";
  if (url.rfind(prefix, 0) != 0)
    return absl::InvalidArgumentError(absl::StrCat("\"", url, "\" is not redis://host:port[/db]"));
  std::string rest = url.substr(prefix.size());
  std::unique_ptr<RedisStore> store(new RedisStore());
  if (size_t slash = rest.find('/'); slash != std::string::npos) {
    const std::string db = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
    auto [p, ec] = std::from_chars(db.data(), db.data() + db.size(), store->db_);
    if (db.empty() || ec != std::errc() || p != db.data() + db.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(url, ": database \"", db, "\" is not a number"));
    }
  }
  const size_t colon = rest.rfind(':');
  store->host_ = colon == std::string::npos ? rest : rest.substr(0, colon);
  if (colon != std::string::npos) {
    const std::string port = rest.substr(colon + 1);
    auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), store->port_);
    if (port.empty() || ec != std::errc() || p != port.data() + port.size()) {
      return absl::InvalidArgumentError(absl::StrCat(url, ": port \"", port, "\" is not a number"));
    }
  }
  if (store->host_.empty()) store->host_ = "127.0.0.1";
  store->nonce_prefix_ = absl::StrCat(std::random_device()(), "-", std::random_device()());
  std::lock_guard<std::mutex> lock(store->mu_);
  if (auto s = store->EnsureConnected(); !s.ok()) return s;
  return store;
}

RedisStore::~RedisStore() {
  if (ctx_ != nullptr) redisFree(ctx_);
}

absl::Status RedisStore::EnsureConnected() {
  if (ctx_ != nullptr && ctx_->err == 0) return absl::OkStatus();
  if (ctx_ != nullptr) redisFree(ctx_);
  timeval timeout{5, 0};
  ctx_ = redisConnectWithTimeout(host_.c_str(), port_, timeout);
  if (ctx_ == nullptr || ctx_->err != 0) {
    const std::string why = ctx_ != nullptr ? ctx_->errstr : "out of memory";
    if (ctx_ != nullptr) redisFree(ctx_);
    ctx_ = nullptr;
    return absl::UnavailableError(absl::StrCat("redis ", host_, ":", port_, ": ", why));
  }
  Reply r(redisCommand(ctx_, "SELECT %d", db_));
  if (r.r == nullptr || r.r->type == REDIS_REPLY_ERROR) {
    return absl::UnavailableError(absl::StrCat("redis: SELECT ", db_, " failed"));
  }
  return absl::OkStatus();
}

absl::Status RedisStore::Append(const std::string& study_id, const std::string& record) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto s = EnsureConnected(); !s.ok()) return s;
  const std::string key = LogKey(study_id);
  // The study's membership first: SADD is idempotent, so a failure after it leaves nothing half
  // done (after the XADD it would report a failure for a record that is already in the log).
  Reply member(redisCommand(ctx_, "SADD schism:studies %b", study_id.data(), study_id.size()));
  if (member.r == nullptr || member.r->type == REDIS_REPLY_ERROR) {
    return absl::UnavailableError("redis SADD schism:studies failed");
  }
  const std::string nonce = absl::StrCat(nonce_prefix_, "-", ++appends_);
  Reply add(redisCommand(ctx_, "XADD %b * r %b n %b", key.data(), key.size(), record.data(),
                         record.size(), nonce.data(), nonce.size()));
  if (add.r != nullptr && add.r->type != REDIS_REPLY_ERROR) return absl::OkStatus();
  if (add.r != nullptr) {  // Redis answered no: nothing was written
    return absl::UnavailableError(absl::StrCat("redis XADD ", key, ": ", add.r->str));
  }
  // The connection broke after the command went out: Redis may have appended the record before
  // dying (with appendfsync always it is then durable). The caller must not be told "failed" for
  // a record that is in the log, or the work it stands for is redone and counted twice, so the
  // stream's last entry (this coordinator is the only writer) says whether it landed.
  const std::string why = ctx_->errstr;
  for (int attempt = 0; attempt < 50; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (!EnsureConnected().ok()) continue;
    Reply last(redisCommand(ctx_, "XREVRANGE %b + - COUNT 1", key.data(), key.size()));
    if (last.r == nullptr || last.r->type != REDIS_REPLY_ARRAY) continue;
    bool landed = false;
    if (last.r->elements == 1 && last.r->element[0]->elements == 2) {
      const redisReply* fields = last.r->element[0]->element[1];
      for (size_t f = 0; f + 1 < fields->elements; f += 2) {
        landed |= std::string(fields->element[f]->str, fields->element[f]->len) == "n" &&
                  std::string(fields->element[f + 1]->str, fields->element[f + 1]->len) == nonce;
      }
    }
    if (landed) return absl::OkStatus();
    return absl::UnavailableError(absl::StrCat("redis XADD ", key, ": ", why));
  }
  return absl::UnavailableError(absl::StrCat("redis XADD ", key, ": ", why,
                                             "; Redis did not come back within 5 s to say "
                                             "whether the record was written"));
}

absl::StatusOr<std::map<std::string, std::vector<std::string>>> RedisStore::ReplayAll() {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto s = EnsureConnected(); !s.ok()) return s;
  std::map<std::string, std::vector<std::string>> out;
  Reply ids(redisCommand(ctx_, "SMEMBERS schism:studies"));
  if (ids.r == nullptr || ids.r->type != REDIS_REPLY_ARRAY)
    return absl::UnavailableError("redis SMEMBERS failed");
  for (size_t i = 0; i < ids.r->elements; ++i) {
    const std::string id(ids.r->element[i]->str, ids.r->element[i]->len);
    const std::string key = LogKey(id);
    Reply entries(redisCommand(ctx_, "XRANGE %b - +", key.data(), key.size()));
    if (entries.r == nullptr || entries.r->type != REDIS_REPLY_ARRAY) {
      return absl::UnavailableError(absl::StrCat("redis XRANGE ", key, " failed"));
    }
    auto& records = out[id];
    for (size_t e = 0; e < entries.r->elements; ++e) {
      const redisReply* entry = entries.r->element[e];  // [id, [field, value]]
      // Fields "r" (the record) and, since appends carry one, "n" (the append's nonce).
      if (entry->elements != 2 || entry->element[1]->elements < 2) {
        return absl::DataLossError(absl::StrCat("redis ", key, ": malformed stream entry"));
      }
      const redisReply* value = entry->element[1]->element[1];
      records.emplace_back(value->str, value->len);
    }
  }
  return out;
}

absl::Status RedisStore::PutArtifact(const std::string& study_id, const std::string& bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto s = EnsureConnected(); !s.ok()) return s;
  const std::string key = ArtifactKey(study_id);
  Reply r(redisCommand(ctx_, "SET %b %b", key.data(), key.size(), bytes.data(), bytes.size()));
  if (r.r == nullptr || r.r->type == REDIS_REPLY_ERROR)
    return absl::UnavailableError(absl::StrCat("redis SET ", key, " failed"));
  return absl::OkStatus();
}

absl::StatusOr<std::string> RedisStore::GetArtifact(const std::string& study_id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto s = EnsureConnected(); !s.ok()) return s;
  const std::string key = ArtifactKey(study_id);
  Reply r(redisCommand(ctx_, "GET %b", key.data(), key.size()));
  if (r.r == nullptr || r.r->type == REDIS_REPLY_ERROR)
    return absl::UnavailableError(absl::StrCat("redis GET ", key, " failed"));
  if (r.r->type == REDIS_REPLY_NIL)
    return absl::NotFoundError(absl::StrCat("study ", study_id, " has no artifact yet"));
  return std::string(r.r->str, r.r->len);
}

}  // namespace schism::coordinator
