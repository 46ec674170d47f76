// Prompt sets: the lists of prompts used for directions, refusal and KL scoring
// (docs/algorithm.md#prompts).
#ifndef SCHISM_COMMON_PROMPT_SET_H_
#define SCHISM_COMMON_PROMPT_SET_H_

#include <cstddef>
#include <optional>
#include <string>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace schism::common {

// A Python-style slice "[a:b]" with optional, possibly negative bounds, as Heretic's `split`.
struct PromptSlice {
  std::optional<long> start;
  std::optional<long> stop;
};

// A split as Heretic writes it: an optional split name and a slice, "train[:400]", "test",
// "[10:]". The name is empty when not given.
struct PromptSplit {
  std::string name;
  PromptSlice slice;
};
absl::StatusOr<PromptSplit> ParsePromptSplit(absl::string_view text);

// Parses "[:400]", "[10:]", "[-5:]", "[2:7]", also with Heretic's split name "train[:400]" (a
// prompt file's only split); an empty string or "train" means the whole set.
absl::StatusOr<PromptSlice> ParsePromptSlice(absl::string_view text);

// Applies `slice` to `prompts` with Python semantics (bounds clamp, negatives count from the end).
std::vector<std::string> ApplySlice(std::vector<std::string> prompts, const PromptSlice& slice);

// Reads a prompt set and applies `split`. A text file holds one prompt per line (LF or CRLF;
// each line stripped of surrounding whitespace and blank lines skipped, as Heretic reads one) in
// its one column, "text"; a .csv file (header row, RFC 4180 quoting) or a .jsonl file (one object
// per line) gives the values of `column` (default "text"), as Heretic's `column` picks a dataset
// column. A folder is a Hugging Face dataset on disk (common/dataset_folder.h), whose split the
// split's name picks (default "train"). Errors name the file, and the column, record or line at
// fault, and for a bad split the text that did not parse.
absl::StatusOr<std::vector<std::string>> LoadPromptLines(const std::string& path,
                                                         absl::string_view split = "",
                                                         absl::string_view column = "");

// Every row of one prompt file, before any split: what LoadPromptLines reads from a .txt, .csv or
// .jsonl file (a text file's blank lines already skipped).
absl::StatusOr<std::vector<std::string>> ReadPromptFileRows(const std::string& path,
                                                            const std::string& column);

}  // namespace schism::common

#endif  // SCHISM_COMMON_PROMPT_SET_H_
