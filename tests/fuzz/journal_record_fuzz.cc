// One journal record line: a record that decodes must encode to a line that decodes to the same
// record (the journal is replayed from what it wrote).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "coordinator/journal_record.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using schism::coordinator::journal::DecodeRecord;
  using schism::coordinator::journal::EncodeRecord;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto record = DecodeRecord(text, 0);
  if (!record.ok()) return 0;
  const std::string encoded = EncodeRecord(*record);
  auto again = DecodeRecord(encoded, 0);
  if (!again.ok() || EncodeRecord(*again) != encoded) std::abort();
  return 0;
}
