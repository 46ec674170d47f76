#include "common/prompt_set.h"

#include "absl/strings/match.h"

#include <algorithm>
#include <charconv>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/dataset_folder.h"
#include "common/text_file.h"

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

absl::StatusOr<PromptSplit> ParsePromptSplit(absl::string_view text) {
  absl::string_view s = absl::StripAsciiWhitespace(text);
  PromptSplit split;
  const size_t bracket = s.find('[');
  split.name = std::string(absl::StripAsciiWhitespace(s.substr(0, bracket)));
  for (char c : split.name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.') {
      return absl::InvalidArgumentError(absl::StrCat(
          "split \"", text, "\": expected a split name and slice such as \"train[:400]\""));
    }
  }
  if (bracket == absl::string_view::npos) return split;
  s.remove_prefix(bracket);
  if (s.size() < 2 || s.back() != ']') {
    return absl::InvalidArgumentError(
        absl::StrCat("split \"", text, "\": expected slice notation such as \"[:400]\""));
  }
  absl::string_view inner = s.substr(1, s.size() - 2);
  size_t colon = inner.find(':');
  if (colon == absl::string_view::npos || inner.find(':', colon + 1) != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("split \"", text, "\": expected exactly one ':' as in \"[a:b]\""));
  }
  auto start = ParseBound(inner.substr(0, colon), text);
  if (!start.ok()) return start.status();
  auto stop = ParseBound(inner.substr(colon + 1), text);
  if (!stop.ok()) return stop.status();
  split.slice.start = *start;
  split.slice.stop = *stop;
  return split;
}

absl::StatusOr<PromptSlice> ParsePromptSlice(absl::string_view text) {
  auto split = ParsePromptSplit(text);
  if (!split.ok()) return split.status();
  // Heretic names the split of a Hugging Face dataset ("train[:400]"); a text file read as a
  // dataset has exactly one, "train".
  if (!split->name.empty() && split->name != "train") {
    if (absl::StripAsciiWhitespace(text).find('[') == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("split \"", text, "\": expected slice notation such as \"[:400]\""));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("split \"", text, "\": a prompt file has one split, \"train\""));
  }
  return split->slice;
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

namespace {

// RFC 4180 records: comma-separated fields, "..." quoting with "" for a quote, newlines inside
// quotes kept. Returns false on an unterminated quote.
bool ParseCsv(const std::string& data, std::vector<std::vector<std::string>>* rows) {
  std::vector<std::string> row;
  std::string field;
  bool quoted = false, any = false;
  for (size_t i = 0; i < data.size(); ++i) {
    const char c = data[i];
    if (quoted) {
      if (c == '"' && i + 1 < data.size() && data[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field += c;
      }
    } else if (c == '"') {
      quoted = any = true;
    } else if (c == ',') {
      row.push_back(std::move(field));
      field.clear();
      any = true;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < data.size() && data[i + 1] == '\n') ++i;
      if (any || !field.empty()) row.push_back(std::move(field));
      if (!row.empty()) rows->push_back(std::move(row));
      row.clear();
      field.clear();
      any = false;
    } else {
      field += c;
      any = true;
    }
  }
  if (quoted) return false;
  if (any || !field.empty()) row.push_back(std::move(field));
  if (!row.empty()) rows->push_back(std::move(row));
  return true;
}

absl::StatusOr<std::vector<std::string>> CsvColumn(const std::string& data, const std::string& path,
                                                   const std::string& column) {
  std::vector<std::vector<std::string>> rows;
  if (!ParseCsv(data, &rows))
    return absl::InvalidArgumentError(absl::StrCat("prompt file ", path, ": unterminated quote"));
  if (rows.empty()) return std::vector<std::string>{};
  const std::vector<std::string>& header = rows[0];
  const auto at = std::find(header.begin(), header.end(), column);
  if (at == header.end()) {
    return absl::InvalidArgumentError(absl::StrCat("prompt file ", path, ": no column \"", column,
                                                   "\" (columns: ", absl::StrJoin(header, ", "),
                                                   ")"));
  }
  const size_t index = static_cast<size_t>(at - header.begin());
  std::vector<std::string> out;
  for (size_t r = 1; r < rows.size(); ++r) {
    if (index >= rows[r].size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompt file ", path, ": record ", r + 1, " has no \"", column, "\" field"));
    }
    out.push_back(rows[r][index]);
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> JsonlColumn(const std::string& data,
                                                     const std::string& path,
                                                     const std::string& column) {
  std::vector<std::string> out;
  size_t line_number = 0;
  for (absl::string_view line : absl::StrSplit(data, '\n')) {
    ++line_number;
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    const auto bad = [&](const char* why) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompt file ", path, ":", line_number, ": ", why));
    };
    if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
    const auto it = j.find(column);
    if (it == j.end() || !it->is_string()) {
      return bad(absl::StrCat("no string field \"", column, "\"").c_str());
    }
    out.push_back(it->get<std::string>());
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ReadPromptFileRows(const std::string& path,
                                                            const std::string& column) {
  auto read = ReadTextFile(path);
  if (!read.ok())
    return absl::Status(read.status().code(),
                        absl::StrCat("prompt file ", read.status().message()));
  const std::string& data = *read;
  if (absl::EndsWith(path, ".csv")) return CsvColumn(data, path, column);
  if (absl::EndsWith(path, ".jsonl") || absl::EndsWith(path, ".ndjson"))
    return JsonlColumn(data, path, column);
  // A text file read as a dataset has one column, "text" (Heretic reads it with the text
  // builder).
  if (column != "text") {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt file ", path, ": a text file has one column, \"text\", not \"", column,
                     "\" (CSV and JSONL files have named columns)"));
  }
  std::vector<std::string> prompts;
  for (absl::string_view line : absl::StrSplit(data, '\n')) {
    line = absl::StripAsciiWhitespace(line);  // Heretic: line.strip()
    if (!line.empty()) prompts.emplace_back(line);
  }
  return prompts;
}

absl::StatusOr<std::vector<std::string>> LoadPromptLines(const std::string& path,
                                                         absl::string_view split,
                                                         absl::string_view column) {
  const std::string col = column.empty() ? "text" : std::string(column);
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    auto parsed = ParsePromptSplit(split);
    if (!parsed.ok()) return parsed.status();
    auto rows = ReadDatasetFolderColumn(path, parsed->name.empty() ? "train" : parsed->name, col);
    if (!rows.ok()) return rows.status();
    // Rows as the dataset holds them, sliced as Heretic slices a dataset.
    std::vector<std::string> prompts = ApplySlice(std::move(*rows), parsed->slice);
    if (prompts.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("dataset ", path, ": split \"", split,
                                                     "\" of column \"", col, "\" is empty"));
    }
    return prompts;
  }
  auto slice = ParsePromptSlice(split);
  if (!slice.ok()) return slice.status();
  auto rows = ReadPromptFileRows(path, col);
  if (!rows.ok()) return rows.status();
  std::vector<std::string> kept;
  for (std::string& p : *rows) {
    if (!absl::StripAsciiWhitespace(p).empty()) kept.push_back(std::move(p));
  }
  if (kept.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("prompt file ", path, ": holds no prompts"));
  }
  return ApplySlice(std::move(kept), *slice);
}

}  // namespace schism::common
