#include "common/dataset_folder.h"

#include <algorithm>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/formats/arrow_column.h"
#include "common/prompt_set.h"
#include "common/text_file.h"

namespace schism::common {
namespace {

namespace fs = std::filesystem;

// `datasets`' split keywords (data_files.py SPLIT_KEYWORDS); any other split name stands for
// itself.
std::vector<std::string> SplitKeywords(const std::string& split) {
  static const std::vector<std::vector<std::string>> kGroups = {
      {"train", "training"},
      {"validation", "valid", "dev", "val"},
      {"test", "testing", "eval", "evaluation"}};
  for (const auto& group : kGroups) {
    if (std::find(group.begin(), group.end(), split) != group.end()) return group;
  }
  return {split};
}

bool IsSeparator(char c) {
  return c == '-' || c == '.' || c == '_' || c == ' ' || absl::ascii_isdigit(c);
}

// Whether `name` holds `keyword` bounded by separators (or the name's start; for a file, a
// separator must follow, as its extension does): "train-00000-of-00001.arrow", "my_test.csv".
bool NamesKeyword(const std::string& name, const std::string& keyword, bool is_file) {
  for (size_t at = name.find(keyword); at != std::string::npos; at = name.find(keyword, at + 1)) {
    const size_t end = at + keyword.size();
    const bool before = at == 0 || IsSeparator(name[at - 1]);
    const bool after = end < name.size() ? IsSeparator(name[end]) : !is_file;
    if (before && after) return true;
  }
  return false;
}

enum class FileKind { kArrow, kCsv, kJsonLines, kText, kParquet, kOther };

FileKind KindOf(const fs::path& path) {
  const std::string ext = absl::AsciiStrToLower(path.extension().string());
  if (ext == ".arrow") return FileKind::kArrow;
  if (ext == ".csv") return FileKind::kCsv;
  if (ext == ".jsonl" || ext == ".ndjson") return FileKind::kJsonLines;
  if (ext == ".json") {
    // Metadata the datasets library and the Hub keep beside the data.
    const std::string name = path.filename().string();
    if (absl::StartsWith(name, "dataset_info") || name == "state.json" ||
        name == "dataset_dict.json")
      return FileKind::kOther;
    return FileKind::kJsonLines;
  }
  if (ext == ".txt") return FileKind::kText;
  if (ext == ".parquet") return FileKind::kParquet;
  return FileKind::kOther;
}

// The rows of a text file as `datasets`' text builder yields them: every line, blank ones too.
absl::StatusOr<std::vector<std::string>> TextRows(const std::string& path) {
  auto data = ReadTextFile(path);
  if (!data.ok()) return data.status();
  std::vector<std::string> rows;
  for (absl::string_view line : absl::StrSplit(*data, '\n')) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    rows.emplace_back(line);
  }
  if (!rows.empty() && rows.back().empty()) rows.pop_back();  // the final newline ends a line
  return rows;
}

absl::StatusOr<std::vector<std::string>> ReadDataFile(const fs::path& file,
                                                      const std::string& column) {
  switch (KindOf(file)) {
    case FileKind::kArrow:
      return formats::ReadArrowStringColumn(file.string(), column);
    case FileKind::kCsv:
    case FileKind::kJsonLines:
      return ReadPromptFileRows(file.string(), column);
    case FileKind::kText:
      if (column != "text") {
        return absl::InvalidArgumentError(absl::StrCat(
            file.string(), ": a text file has one column, \"text\", not \"", column, "\""));
      }
      return TextRows(file.string());
    case FileKind::kParquet:
      return formats::ReadParquetStringColumn(file.string(), column);
    case FileKind::kOther:
      break;
  }
  return absl::InternalError("not a data file");
}

absl::StatusOr<nlohmann::json> ReadJsonFile(const fs::path& path) {
  auto text = ReadTextFile(path.string());
  if (!text.ok()) return text.status();
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return absl::DataLossError(absl::StrCat(path.string(), ": not a JSON object"));
  return j;
}

// Dataset.save_to_disk: state.json's _data_files, each {"filename": "data-....arrow"}.
absl::StatusOr<std::vector<std::string>> SavedDatasetColumn(const fs::path& folder,
                                                            const std::string& column) {
  auto state = ReadJsonFile(folder / "state.json");
  if (!state.ok()) return state.status();
  const auto files = state->find("_data_files");
  if (files == state->end() || !files->is_array() || files->empty()) {
    return absl::DataLossError(
        absl::StrCat((folder / "state.json").string(), ": no \"_data_files\" list"));
  }
  std::vector<std::string> rows;
  for (const auto& entry : *files) {
    const auto name = entry.is_object() ? entry.find("filename") : entry.end();
    if (!entry.is_object() || name == entry.end() || !name->is_string()) {
      return absl::DataLossError(absl::StrCat((folder / "state.json").string(),
                                              ": a \"_data_files\" entry has no \"filename\""));
    }
    const fs::path file = folder / name->get<std::string>();
    // The listed name must stay inside the folder.
    if (file.filename() != fs::path(name->get<std::string>())) {
      return absl::DataLossError(absl::StrCat((folder / "state.json").string(), ": data file \"",
                                              name->get<std::string>(),
                                              "\" is not a plain file name"));
    }
    auto values = formats::ReadArrowStringColumn(file.string(), column);
    if (!values.ok()) return values.status();
    rows.insert(rows.end(), std::make_move_iterator(values->begin()),
                std::make_move_iterator(values->end()));
  }
  return rows;
}

// A folder of data files: which of them belong to `split`.
absl::StatusOr<std::vector<fs::path>> SplitFiles(const fs::path& folder, const std::string& split,
                                                 std::set<std::string>* splits_seen) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(folder, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (absl::StartsWith(name, ".") || absl::StartsWith(name, "__")) {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file() && KindOf(it->path()) != FileKind::kOther)
      files.push_back(it->path());
  }
  if (ec) return absl::NotFoundError(absl::StrCat("dataset ", folder.string(), ": ", ec.message()));
  if (files.empty()) {
    return absl::NotFoundError(absl::StrCat(
        "dataset ", folder.string(),
        ": holds no data files (.arrow, .csv, .jsonl, .json lines, .txt, or a save_to_disk "
        "folder's state.json / dataset_dict.json)"));
  }
  std::sort(files.begin(), files.end());
  const std::vector<std::string> wanted = SplitKeywords(split);
  std::vector<std::string> candidates = {"train", "validation", "test"};
  if (wanted.size() == 1) candidates.push_back(split);  // a custom split name stands for itself
  // Pass 1: file names; pass 2: folder names; each as `datasets` resolves its default patterns.
  for (int pass = 0; pass < 2; ++pass) {
    auto names = [&](const fs::path& file, const std::string& keyword) {
      if (pass == 0) return NamesKeyword(file.filename().string(), keyword, /*is_file=*/true);
      for (const auto& part : fs::relative(file.parent_path(), folder)) {
        if (NamesKeyword(part.string(), keyword, /*is_file=*/false)) return true;
      }
      return false;
    };
    std::vector<fs::path> matched;
    splits_seen->clear();
    for (const fs::path& file : files) {
      for (const std::string& candidate : candidates) {
        const std::vector<std::string> group = SplitKeywords(candidate);
        if (std::none_of(group.begin(), group.end(),
                         [&](const std::string& keyword) { return names(file, keyword); }))
          continue;
        splits_seen->insert(candidate);
        if (group == wanted) matched.push_back(file);
      }
    }
    if (!splits_seen->empty()) return matched;
  }
  splits_seen->insert("train");
  if (wanted == SplitKeywords("train")) return files;
  return std::vector<fs::path>{};
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ReadDatasetFolderColumn(const std::string& folder_name,
                                                                 const std::string& split_name,
                                                                 const std::string& column) {
  const fs::path folder(folder_name);
  std::error_code ec;
  if (fs::exists(folder / "state.json", ec)) return SavedDatasetColumn(folder, column);
  if (fs::exists(folder / "dataset_dict.json", ec)) {
    auto dict = ReadJsonFile(folder / "dataset_dict.json");
    if (!dict.ok()) return dict.status();
    std::vector<std::string> splits;
    const auto listed = dict->find("splits");
    if (listed != dict->end() && listed->is_array()) {
      for (const auto& s : *listed)
        if (s.is_string()) splits.push_back(s.get<std::string>());
    }
    if (std::find(splits.begin(), splits.end(), split_name) == splits.end()) {
      return absl::NotFoundError(absl::StrCat("dataset ", folder_name, ": no split \"", split_name,
                                              "\" (splits: ", absl::StrJoin(splits, ", "), ")"));
    }
    return SavedDatasetColumn(folder / split_name, column);
  }
  std::set<std::string> splits_seen;
  auto files = SplitFiles(folder, split_name, &splits_seen);
  if (!files.ok()) return files.status();
  if (files->empty()) {
    return absl::NotFoundError(
        absl::StrCat("dataset ", folder_name, ": no data files of split \"", split_name,
                     "\" (splits there: ", absl::StrJoin(splits_seen, ", "), ")"));
  }
  std::vector<std::string> rows;
  for (const fs::path& file : *files) {
    auto values = ReadDataFile(file, column);
    if (!values.ok()) return values.status();
    rows.insert(rows.end(), std::make_move_iterator(values->begin()),
                std::make_move_iterator(values->end()));
  }
  return rows;
}

}  // namespace schism::common
