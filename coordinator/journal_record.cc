#include "coordinator/journal_record.h"

#include <cmath>
#include <limits>

#include <google/protobuf/util/json_util.h>
#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace schism::coordinator::journal {
namespace {

using Json = nlohmann::json;

constexpr std::pair<LeaseCause, const char*> kCauses[] = {
    {LeaseCause::kExpired, "expired"},
    {LeaseCause::kWorkerFailed, "worker_failed"},
    {LeaseCause::kRestart, "restart"}};

const char* CauseName(LeaseCause cause) {
  for (const auto& [c, name] : kCauses) {
    if (c == cause) return name;
  }
  return "expired";
}

std::string ProtoJson(const google::protobuf::Message& message, bool proto_names) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = proto_names;
  // Cannot fail for the messages written here (no Any fields); an empty string would be refused
  // on replay, never silently accepted.
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return json;
}

// Reads the fields of one decoded object; the first problem wins and names the field.
class FieldReader {
 public:
  FieldReader(const Json& json, std::string_view tag, size_t position)
      : json_(json), tag_(tag), position_(position) {}

  const absl::Status& status() const { return status_; }

  int64_t Integer(const char* key, std::optional<int64_t> fallback = std::nullopt) {
    const Json* v = Find(key, fallback.has_value());
    if (v == nullptr) return fallback.value_or(0);
    if (!v->is_number_integer()) return Fail(key, "must be an integer"), 0;
    return v->get<int64_t>();
  }
  int Int32(const char* key) {
    const int64_t v = Integer(key);
    if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max()) {
      return Fail(key, "is out of range"), 0;
    }
    return static_cast<int>(v);
  }
  int64_t TrialNumber() {
    const int64_t n = Integer("number");
    if (n < 0) Fail("number", "must be >= 0");
    return n;
  }
  double Number(const char* key) {
    const Json* v = Find(key, false);
    if (v == nullptr) return 0;
    if (!v->is_number()) return Fail(key, "must be a number"), 0;
    return v->get<double>();
  }
  std::optional<std::string> OptionalString(const char* key) {
    const Json* v = Find(key, true);
    if (v == nullptr) return std::nullopt;
    if (!v->is_string()) return Fail(key, "must be a string"), std::nullopt;
    return v->get<std::string>();
  }
  std::string String(const char* key, std::optional<std::string> fallback = std::nullopt) {
    if (!fallback && Find(key, false) == nullptr) return "";
    auto v = OptionalString(key);
    return v ? *v : fallback.value_or("");
  }
  // An optional message field in proto JSON; absent leaves `message` as it is.
  void OptionalProto(const char* key, google::protobuf::Message* message) {
    const Json* v = Find(key, true);
    if (v == nullptr) return;
    // Fields a newer schism added are skipped, not refused (fields are only ever added).
    google::protobuf::util::JsonParseOptions options;
    options.ignore_unknown_fields = true;
    if (!v->is_object() ||
        !google::protobuf::util::JsonStringToMessage(v->dump(), message, options).ok()) {
      Fail(key, "is not a valid message");
    }
  }
  void Proto(const char* key, google::protobuf::Message* message) {
    const std::string text = String(key);
    if (!status_.ok()) return;
    if (!google::protobuf::util::JsonStringToMessage(text, message).ok())
      Fail(key, "is not a valid message");
  }
  std::map<std::string, double> NumberMap(const char* key) {
    std::map<std::string, double> out;
    const Json* v = Find(key, false);
    if (v == nullptr) return out;
    if (!v->is_object()) return Fail(key, "must be an object"), out;
    for (auto it = v->begin(); it != v->end(); ++it) {
      if (!it->is_number() || !std::isfinite(it->get<double>())) {
        Fail(key, absl::StrCat("value of \"", it.key(), "\" must be a finite number"));
        return out;
      }
      out[it.key()] = it->get<double>();
    }
    return out;
  }
  void Fail(const std::string& key, const std::string& why) {
    if (!status_.ok()) return;
    status_ = absl::DataLossError(
        absl::StrCat("journal record ", position_, " (", tag_, "): field \"", key, "\" ", why));
  }

 private:
  const Json* Find(const char* key, bool optional) {
    auto it = json_.find(key);
    if (it == json_.end() || it->is_null()) {
      if (!optional) Fail(key, "is missing");
      return nullptr;
    }
    return &*it;
  }

  const Json& json_;
  std::string tag_;
  size_t position_;
  absl::Status status_;
};

// The tags as the journal spells them; DecodeFields reads the same names.
struct TagName {
  std::string_view operator()(const Submitted&) const { return "submitted"; }
  std::string_view operator()(const Prepared&) const { return "prepared"; }
  std::string_view operator()(const PrepareFailed&) const { return "prepare_failed"; }
  std::string_view operator()(const Asked&) const { return "asked"; }
  std::string_view operator()(const Leased&) const { return "leased"; }
  std::string_view operator()(const Completed&) const { return "completed"; }
  std::string_view operator()(const Returned& r) const { return r.failed ? "failed" : "requeued"; }
  std::string_view operator()(const StudyFailed&) const { return "study_failed"; }
  std::string_view operator()(const Finished&) const { return "finished"; }
  std::string_view operator()(const Cancelled&) const { return "cancelled"; }
  std::string_view operator()(const Export&) const { return "export"; }
};

// Each record's fields; EncodeRecord adds the tag.
struct Encoder {
  Json operator()(const Submitted& r) const {
    return {{"spec", ProtoJson(r.spec, /*proto_names=*/true)}, {"order", r.order}};
  }
  Json operator()(const Prepared& r) const {
    Json j{{"num_layers", r.num_layers}, {"baseline_refusals", r.baseline_refusals}};
    if (r.response_prefix) j["response_prefix"] = *r.response_prefix;
    if (r.baseline.ByteSizeLong() > 0) j["baseline"] = OtherScoresJson(r.baseline);
    return j;
  }
  Json operator()(const PrepareFailed& r) const { return {{"reason", r.reason}}; }
  Json operator()(const Asked& r) const {
    Json params = Json::object();
    for (const auto& [name, value] : r.params) params[name] = value;
    return {{"number", r.number}, {"params", params}};
  }
  Json operator()(const Leased& r) const {
    return {{"number", r.number}, {"attempt", r.attempt}, {"worker", r.worker}, {"lease", r.lease}};
  }
  Json operator()(const Completed& r) const {
    Json j{{"number", r.number},
           {"refusals", r.scores.refusals()},
           {"refusal_prompts", r.scores.refusal_prompts()},
           {"kl_divergence", r.scores.kl_divergence()}};
    const Json others = OtherScoresJson(r.scores);
    if (!others.empty()) j["other_scores"] = others;
    return j;
  }
  // The other scorers' fields of `scores` as proto JSON (empty object: none set).
  static Json OtherScoresJson(v1::TrialScores scores) {
    scores.clear_refusals();
    scores.clear_refusal_prompts();
    scores.clear_kl_divergence();
    if (scores.ByteSizeLong() == 0) return Json::object();
    // Printing fails only on invalid UTF-8 (workers send only printable text): recorded as such,
    // never thrown.
    Json j = Json::parse(ProtoJson(scores, /*proto_names=*/true), nullptr, false);
    if (j.is_discarded()) return {{"judge_error", "unprintable scores"}};
    return j;
  }
  Json operator()(const Returned& r) const {
    Json j{{"number", r.number}, {"reason", r.reason}, {"cause", CauseName(r.cause)}};
    if (r.worker) j["worker"] = *r.worker;
    if (r.failed) j["error"] = r.error;
    return j;
  }
  Json operator()(const StudyFailed& r) const { return {{"reason", r.reason}}; }
  Json operator()(const Finished&) const { return Json::object(); }
  Json operator()(const Cancelled&) const { return Json::object(); }
  Json operator()(const Export& r) const { return {{"job", ProtoJson(r.job, false)}}; }
};

Record DecodeFields(const std::string& tag, FieldReader& f, bool* known) {
  *known = true;
  if (tag == "submitted") {
    Submitted r;
    f.Proto("spec", &r.spec);
    r.order = f.Integer("order", 0);
    return r;
  }
  if (tag == "prepared") {
    Prepared r;
    r.num_layers = f.Int32("num_layers");
    r.baseline_refusals = f.Int32("baseline_refusals");
    r.response_prefix = f.OptionalString("response_prefix");
    f.OptionalProto("baseline", &r.baseline);
    return r;
  }
  if (tag == "prepare_failed") return PrepareFailed{f.String("reason", "")};
  if (tag == "asked") {
    Asked r;
    r.number = f.TrialNumber();
    r.params = f.NumberMap("params");
    return r;
  }
  if (tag == "leased") {
    Leased r;
    r.number = f.TrialNumber();
    r.attempt = f.Int32("attempt");
    r.worker = f.String("worker", "");
    r.lease = f.String("lease", "");
    return r;
  }
  if (tag == "completed") {
    Completed r;
    r.number = f.TrialNumber();
    v1::TrialScores others;
    f.OptionalProto("other_scores", &others);
    r.scores = others;
    r.scores.set_refusals(f.Int32("refusals"));
    r.scores.set_refusal_prompts(f.Int32("refusal_prompts"));
    r.scores.set_kl_divergence(f.Number("kl_divergence"));
    return r;
  }
  if (tag == "requeued" || tag == "failed") {
    Returned r;
    r.number = f.TrialNumber();
    r.failed = tag == "failed";
    r.reason = f.String("reason", "");
    r.worker = f.OptionalString("worker");
    const std::string cause = f.String("cause", "expired");
    bool found = false;
    for (const auto& [c, name] : kCauses) {
      if (cause == name) r.cause = c, found = true;
    }
    if (!found)
      f.Fail("cause", absl::StrCat("\"", cause, "\" is not expired, worker_failed or restart"));
    if (r.failed) r.error = f.String("error", r.reason);  // older journals kept the reason only
    return r;
  }
  if (tag == "study_failed") return StudyFailed{f.String("reason", "")};
  if (tag == "finished") return Finished{};
  if (tag == "cancelled") return Cancelled{};
  if (tag == "export") {
    Export r;
    f.Proto("job", &r.job);
    return r;
  }
  *known = false;
  return Finished{};
}

}  // namespace

std::string_view TagOf(const Record& record) { return std::visit(TagName{}, record); }

std::string EncodeRecord(const Record& record) {
  Json json = std::visit(Encoder{}, record);
  json["type"] = TagOf(record);
  return json.dump();
}

absl::StatusOr<Record> DecodeRecord(std::string_view text, size_t position) {
  const Json json = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return absl::DataLossError(absl::StrCat("journal record ", position, " is not a JSON object"));
  }
  auto type = json.find("type");
  if (type == json.end() || !type->is_string()) {
    return absl::DataLossError(
        absl::StrCat("journal record ", position, " has no string \"type\""));
  }
  const std::string tag = type->get<std::string>();
  FieldReader fields(json, tag, position);
  bool known = false;
  Record record = DecodeFields(tag, fields, &known);
  if (!known)
    return absl::DataLossError(
        absl::StrCat("journal record ", position, " has unknown type \"", tag, "\""));
  if (!fields.status().ok()) return fields.status();
  return record;
}

}  // namespace schism::coordinator::journal
