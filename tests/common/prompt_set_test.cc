#include "common/prompt_set.h"

#include <gtest/gtest.h>

#include <fstream>

#include "common/env.h"
#include "tests/test_support.h"

namespace schism::common {
namespace {

std::vector<std::string> Range(int n) {
  std::vector<std::string> v;
  for (int i = 0; i < n; ++i) v.push_back(std::to_string(i));
  return v;
}

TEST(PromptSlice, FollowsPythonSliceSemantics) {
  auto slice = [](const char* text) { return ApplySlice(Range(10), *ParsePromptSlice(text)); };
  EXPECT_EQ(slice("[:3]"), (std::vector<std::string>{"0", "1", "2"}));
  EXPECT_EQ(slice("[8:]"), (std::vector<std::string>{"8", "9"}));
  EXPECT_EQ(slice("[-2:]"), (std::vector<std::string>{"8", "9"}));
  EXPECT_EQ(slice("[2:-7]"), (std::vector<std::string>{"2"}));
  EXPECT_EQ(slice("[:400]").size(), 10u);
  EXPECT_TRUE(slice("[5:2]").empty());
  EXPECT_EQ(slice("").size(), 10u);
  // Heretic's spelling with the split's name: a prompt file's one split is "train".
  EXPECT_EQ(slice("train[:3]"), slice("[:3]"));
  EXPECT_EQ(slice("train").size(), 10u);
}

TEST(PromptSlice, RejectsMalformedSplitsWithTheOffendingText) {
  auto bad = ParsePromptSlice("[a:3]");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("\"a\" is not an integer"), std::string::npos);
  EXPECT_FALSE(ParsePromptSlice(":400").ok());
  EXPECT_FALSE(ParsePromptSlice("[1:2:3]").ok());
  auto test_split = ParsePromptSlice("test[:100]");
  ASSERT_FALSE(test_split.ok());
  EXPECT_NE(test_split.status().message().find("one split, \"train\""), std::string::npos)
      << test_split.status();
}

TEST(LoadPromptLines, ReadsTheSharedDatasetsWithHereticSplits) {
  const std::string dir = DefaultDataDir();
  auto harmful = LoadPromptLines(dir + "/harmful_test.txt", "[:100]");
  ASSERT_TRUE(harmful.ok()) << harmful.status();
  EXPECT_EQ(harmful->size(), 100u);
  auto harmless = LoadPromptLines(dir + "/harmless_train.txt");
  ASSERT_TRUE(harmless.ok()) << harmless.status();
  EXPECT_EQ(harmless->size(), 400u);
  EXPECT_EQ(harmless->front().find('\n'), std::string::npos);
}

TEST(LoadPromptLines, MissingAndEmptyFilesNameThePath) {
  auto missing = LoadPromptLines("/nonexistent/prompts.txt");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/prompts.txt"), std::string::npos);

  const std::string path = testing::TempDir() + "/blank_prompts.txt";
  std::ofstream(path) << "\n  \r\n";
  auto blank = LoadPromptLines(path);
  ASSERT_FALSE(blank.ok());
  EXPECT_NE(blank.status().message().find("holds no prompts"), std::string::npos);
}

TEST(LoadPromptLines, ReadsCsvAndJsonlColumnsAndNamesWhatIsWrong) {
  const std::string dir = testing_support::MakeTempDir("prompt_formats");
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir + "/" + name, std::ios::binary) << text;
    return dir + "/" + name;
  };
  const std::string csv = write(
      "p.csv", "id,text,note\r\n1,\"Say \"\"hi\"\", twice\",a\n2,\"two\nlines\",b\n3,plain,c\n");
  EXPECT_EQ(*LoadPromptLines(csv),
            (std::vector<std::string>{"Say \"hi\", twice", "two\nlines", "plain"}));
  EXPECT_EQ(*LoadPromptLines(csv, "train[1:]", "note"), (std::vector<std::string>{"b", "c"}));
  auto no_column = LoadPromptLines(csv, "", "prompt");
  ASSERT_FALSE(no_column.ok());
  EXPECT_NE(no_column.status().message().find("no column \"prompt\" (columns: id, text, note)"),
            std::string::npos)
      << no_column.status();
  EXPECT_FALSE(LoadPromptLines(write("open.csv", "text\n\"never closed\n"), "").ok());
  EXPECT_NE(
      LoadPromptLines(write("short.csv", "a,text\n1\n"), "").status().message().find("record 2"),
      std::string::npos);

  const std::string jsonl =
      write("p.jsonl", "{\"prompt\": \"first\", \"n\": 1}\n\n{\"prompt\": \"second\"}\n");
  EXPECT_EQ(*LoadPromptLines(jsonl, "", "prompt"), (std::vector<std::string>{"first", "second"}));
  auto missing = LoadPromptLines(jsonl, "", "n");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("p.jsonl:1: no string field \"n\""), std::string::npos)
      << missing.status();
  EXPECT_NE(LoadPromptLines(write("bad.jsonl", "[1]\n"), "", "x")
                .status()
                .message()
                .find("bad.jsonl:1: not a JSON object"),
            std::string::npos);
  auto text_column = LoadPromptLines(write("p.txt", "a\nb\n"), "", "prompt");
  ASSERT_FALSE(text_column.ok());
  EXPECT_NE(text_column.status().message().find("one column, \"text\""), std::string::npos)
      << text_column.status();
  EXPECT_EQ(LoadPromptLines(dir + "/p.txt", "", "text")->size(), 2u);
}

}  // namespace
}  // namespace schism::common
