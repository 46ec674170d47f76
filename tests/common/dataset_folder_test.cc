// Hugging Face dataset folders, written by the `datasets` library (tests/oracles/
// hf_dataset_fixtures.py) and read back by it as the oracle: schism must read the same rows.
#include "common/dataset_folder.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/formats/arrow_column.h"
#include "common/prompt_set.h"
#include "tests/test_support.h"

namespace schism::common {
namespace {

class DatasetFolder : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!formats::ArrowColumnsSupported()) return;  // every test skips (SetUp)
    dir_ = new std::string(testing_support::MakeTempDir("hf_datasets"));
    std::string out;
    const int rc = testing_support::RunOracle("hf_dataset_fixtures.py", {*dir_}, &out);
    ASSERT_EQ(rc, 0) << "the datasets oracle (pip install datasets; scripts/setup) failed:\n"
                     << out;
    cases_ = new nlohmann::json(nlohmann::json::parse(
        testing_support::ReadFile(*dir_ + "/cases.json"), nullptr, /*allow_exceptions=*/false));
    ASSERT_TRUE(cases_->is_object()) << "the oracle wrote no cases.json:\n" << out;
  }
  static void TearDownTestSuite() {
    delete cases_;
    delete dir_;
  }
  void SetUp() override {
    if (!formats::ArrowColumnsSupported())
      GTEST_SKIP() << "this build has no Apache Arrow (-DSCHISM_COORDINATOR_ONLY, or no pyarrow)";
  }
  static std::string Bad(const std::string& name) { return *dir_ + "/bad/" + name; }
  static std::string Error(const absl::StatusOr<std::vector<std::string>>& result) {
    EXPECT_FALSE(result.ok()) << "read " << (result.ok() ? result->size() : 0) << " rows";
    return result.ok() ? "" : std::string(result.status().message());
  }

  static std::string* dir_;
  static nlohmann::json* cases_;
};
std::string* DatasetFolder::dir_ = nullptr;
nlohmann::json* DatasetFolder::cases_ = nullptr;

// Python's rows[start:stop] for the bounds the test uses.
std::vector<std::string> PythonSlice(const std::vector<std::string>& rows, long start, long stop) {
  const long n = static_cast<long>(rows.size());
  start = std::clamp(start < 0 ? start + n : start, 0L, n);
  stop = std::clamp(stop < 0 ? stop + n : stop, 0L, n);
  if (stop <= start) return {};
  return {rows.begin() + start, rows.begin() + stop};
}

TEST_F(DatasetFolder, EveryLayoutGivesTheRowsTheDatasetsLibraryReads) {
  ASSERT_NE(cases_, nullptr);
  ASSERT_GE(cases_->size(), 12u);
  for (const auto& [name, c] : cases_->items()) {
    SCOPED_TRACE(name);
    const std::string folder = c["folder"], split = c["split"], column = c["column"];
    const auto expected = c["rows"].get<std::vector<std::string>>();
    ASSERT_GE(expected.size(), 4u);
    auto rows = ReadDatasetFolderColumn(folder, split, column);
    ASSERT_TRUE(rows.ok()) << rows.status();
    EXPECT_EQ(*rows, expected);
    // As a study's prompt set: Heretic's split syntax, the slice applied to the split's rows.
    auto sliced = LoadPromptLines(folder, split + "[2:-1]", column);
    ASSERT_TRUE(sliced.ok()) << sliced.status();
    EXPECT_EQ(*sliced, PythonSlice(expected, 2, -1));
  }
}

TEST_F(DatasetFolder, TheSplitNameDefaultsToTrainAndIsNotCheckedForASavedDataset) {
  const auto& saved = (*cases_)["saved"];
  const auto expected = saved["rows"].get<std::vector<std::string>>();
  // A save_to_disk Dataset holds one split whatever it is called (Heretic slices it as is).
  EXPECT_EQ(*LoadPromptLines(saved["folder"], "[:4]"), PythonSlice(expected, 0, 4));
  EXPECT_EQ(*LoadPromptLines(saved["folder"], "test[:4]"), PythonSlice(expected, 0, 4));
  const auto& hub = (*cases_)["hub_csv_train"];
  EXPECT_EQ(*LoadPromptLines(hub["folder"], "[-3:]"),
            PythonSlice(hub["rows"].get<std::vector<std::string>>(), -3, 25));
}

TEST_F(DatasetFolder, WhatCannotBeReadIsNamed) {
  const std::string saved = (*cases_)["saved"]["folder"];
  const std::string dict = (*cases_)["saved_dict_test"]["folder"];
  const std::string hub = (*cases_)["hub_csv_test"]["folder"];
  EXPECT_NE(Error(ReadDatasetFolderColumn(saved, "train", "prompt"))
                .find("no column \"prompt\" (columns: id, text, note)"),
            std::string::npos);
  EXPECT_NE(Error(ReadDatasetFolderColumn(dict, "validation", "text"))
                .find("no split \"validation\" (splits: train, test)"),
            std::string::npos);
  EXPECT_NE(Error(ReadDatasetFolderColumn(hub, "validation", "text"))
                .find("no data files of split \"validation\" (splits there: test, train)"),
            std::string::npos);
  EXPECT_NE(Error(ReadDatasetFolderColumn(Bad("nulls"), "train", "text")).find("row 1 is null"),
            std::string::npos);
  EXPECT_NE(Error(ReadDatasetFolderColumn(Bad("numbers"), "train", "text"))
                .find("column \"text\" holds int64, not text"),
            std::string::npos);
  const std::string truncated = Error(ReadDatasetFolderColumn(Bad("truncated"), "train", "text"));
  EXPECT_NE(truncated.find("not a readable Arrow IPC file"), std::string::npos) << truncated;
  EXPECT_NE(truncated.find("data-00000-of-00001.arrow"), std::string::npos) << truncated;
  const std::string cut = Error(ReadDatasetFolderColumn(Bad("parquet_truncated"), "train", "text"));
  EXPECT_NE(cut.find("not a readable Parquet file"), std::string::npos) << cut;
  EXPECT_NE(cut.find("train-00000-of-00001.parquet"), std::string::npos) << cut;
  EXPECT_NE(Error(ReadDatasetFolderColumn(Bad("parquet_numbers"), "train", "text"))
                .find("column \"text\" holds int64, not text"),
            std::string::npos);
  const std::string parquet = (*cases_)["hub_parquet_train"]["folder"];
  EXPECT_NE(Error(ReadDatasetFolderColumn(parquet, "train", "prompt"))
                .find("no column \"prompt\" (columns: text, long)"),
            std::string::npos);
  const std::string empty = testing_support::MakeTempDir("hf_empty");
  EXPECT_NE(Error(ReadDatasetFolderColumn(empty, "train", "text")).find("holds no data files"),
            std::string::npos);
  // A state.json naming a file outside its folder is refused, not followed.
  const std::string escape = testing_support::MakeTempDir("hf_escape");
  std::ofstream(escape + "/state.json") << R"({"_data_files": [{"filename": "../x.arrow"}]})";
  EXPECT_NE(Error(ReadDatasetFolderColumn(escape, "train", "text")).find("not a plain file name"),
            std::string::npos);
  std::ofstream(escape + "/state.json") << "{not json";
  EXPECT_NE(Error(ReadDatasetFolderColumn(escape, "train", "text")).find("not a JSON object"),
            std::string::npos);
  // A slice that leaves nothing is an error, not an empty prompt set.
  EXPECT_NE(Error(LoadPromptLines(saved, "train[30:]")).find("is empty"), std::string::npos);
  EXPECT_NE(Error(LoadPromptLines(saved, "tr ain[:3]")).find("expected a split name"),
            std::string::npos);
}

}  // namespace
}  // namespace schism::common
