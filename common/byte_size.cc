#include "common/byte_size.h"

#include <cctype>
#include <map>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace schism::common {

absl::StatusOr<uint64_t> ParseByteSize(const std::string& text) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
    ++i;
  double number = 0;
  if (i == 0 || !absl::SimpleAtod(text.substr(0, i), &number)) {
    return absl::InvalidArgumentError(
        absl::StrCat("size \"", text, "\": expected a number with an optional unit (5GB, 500MiB)"));
  }
  std::string unit = text.substr(i);
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  static const std::map<std::string, double> kUnits = {{"", 1},
                                                       {"B", 1},
                                                       {"KB", 1e3},
                                                       {"MB", 1e6},
                                                       {"GB", 1e9},
                                                       {"TB", 1e12},
                                                       {"KIB", 1024.0},
                                                       {"MIB", 1048576.0},
                                                       {"GIB", 1073741824.0},
                                                       {"TIB", 1099511627776.0}};
  auto it = kUnits.find(unit);
  if (it == kUnits.end() || number <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "size \"", text, "\": expected a positive number with B, KB, MB, GB, KiB, MiB or GiB"));
  }
  // Found by study_config_fuzz: a size past 2^64 bytes was converted to uint64_t, which is
  // undefined (UBSan), and one under a byte became 0.
  const double bytes = number * it->second;
  if (bytes >= 18446744073709551616.0) {
    return absl::InvalidArgumentError(
        absl::StrCat("size \"", text, "\": too large (at most 2^64 - 1 bytes)"));
  }
  if (bytes < 1) {
    return absl::InvalidArgumentError(absl::StrCat("size \"", text, "\": less than one byte"));
  }
  return static_cast<uint64_t>(bytes);
}

}  // namespace schism::common
