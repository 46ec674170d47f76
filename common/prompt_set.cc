#include "common/prompt_set.h"

#include "absl/strings/match.h"

#include <algorithm>
#include <charconv>
#include <fstream>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace schism::common {
namespace {

absl::StatusOr<std::optional<long>> ParseBound(absl::string_view text, absl::string_view whole) {
  text = absl::StripAsciiWhitespace(text);
  if (text.empty()) return std::optional<long>();
  long value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("split \"", whole, "\": \"", text, "\" is not an integer"));
  }
  return std::optional<long>(value);
}

}  // namespace

absl::StatusOr<PromptSlice> ParsePromptSlice(absl::string_view text) {
  absl::string_view s = absl::StripAsciiWhitespace(text);
  // Heretic names the split of a Hugging Face dataset ("train[:400]"); a text file read as a
  // dataset has exactly one, "train".
  if (absl::StartsWith(s, "train")) s.remove_prefix(5);
  if (s.empty()) return PromptSlice{};
  if (s.front() != '[' && s.find('[') != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("split \"", text, "\": a prompt file has one split, \"train\""));
  }
  if (s.size() < 2 || s.front() != '[' || s.back() != ']') {
    return absl::InvalidArgumentError(
        absl::StrCat("split \"", text, "\": expected slice notation such as \"[:400]\""));
  }
  absl::string_view inner = s.substr(1, s.size() - 2);
  size_t colon = inner.find(':');
  if (colon == absl::string_view::npos || inner.find(':', colon + 1) != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("split \"", text, "\": expected exactly one ':' as in \"[a:b]\""));
  }
  PromptSlice slice;
  auto start = ParseBound(inner.substr(0, colon), text);
  if (!start.ok()) return start.status();
  auto stop = ParseBound(inner.substr(colon + 1), text);
  if (!stop.ok()) return stop.status();
  slice.start = *start;
  slice.stop = *stop;
  return slice;
}

std::vector<std::string> ApplySlice(std::vector<std::string> prompts, const PromptSlice& slice) {
  const long n = static_cast<long>(prompts.size());
  auto resolve = [n](std::optional<long> bound, long fallback) {
    if (!bound) return fallback;
    long v = *bound < 0 ? *bound + n : *bound;
    return std::clamp(v, 0L, n);
  };
  const long start = resolve(slice.start, 0);
  const long stop = resolve(slice.stop, n);
  if (stop <= start) return {};
  return std::vector<std::string>(std::make_move_iterator(prompts.begin() + start),
                                  std::make_move_iterator(prompts.begin() + stop));
}

absl::StatusOr<std::vector<std::string>> LoadPromptLines(const std::string& path,
                                                         absl::string_view split) {
  auto slice = ParsePromptSlice(split);
  if (!slice.ok()) return slice.status();
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("prompt file ", path, ": cannot open"));
  std::vector<std::string> prompts;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    prompts.push_back(line);
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat("prompt file ", path, ": read error"));
  if (prompts.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("prompt file ", path, ": holds no prompts"));
  }
  return ApplySlice(std::move(prompts), *slice);
}

}  // namespace schism::common
