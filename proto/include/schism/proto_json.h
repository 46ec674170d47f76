// Messages as the JSON users see (CLI --json, the HTTP API, reproduce.json): proto field names
// as written in proto/ (snake_case), int64 as strings and zero values left out, as proto3 JSON
// mapping prescribes.
#ifndef SCHISM_PROTO_JSON_H_
#define SCHISM_PROTO_JSON_H_

#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>

#include <string>

namespace schism {

inline std::string ProtoJson(const google::protobuf::Message& message) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(message, &out,
                                                    options);  // fails only on bad UTF-8
  return out;
}

}  // namespace schism

#endif  // SCHISM_PROTO_JSON_H_
