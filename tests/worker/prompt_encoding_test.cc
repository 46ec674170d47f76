// A study's prompt sets as the worker encodes them, on the real model's chat template and
// tokenizer: Heretic's per-set prefix, suffix and system prompt each change what the model sees.
#include "worker/prompt_encoding.h"

#include <gtest/gtest.h>

#include <fstream>

#include "tests/test_support.h"

namespace schism::worker {
namespace {

class PromptEncodingTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto m = model::LoadModel(testing_support::RealModelPath());
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = new model::LoadedModel(std::move(*m));
  }
  static void TearDownTestSuite() { delete model_; }

  // The model's text of each encoded prompt of `set` (the study's system prompt is Heretic's).
  std::vector<std::string> Encode(const v1::PromptSet& set, std::vector<std::string>* rows,
                                  size_t limit = 100) {
    v1::StudySpec spec;
    spec.set_system_prompt("You are a helpful assistant.");
    auto ids = EncodePromptSet(*model_, spec, set, "", limit, rows);
    EXPECT_TRUE(ids.ok()) << ids.status();
    std::vector<std::string> texts;
    if (ids.ok()) {
      for (const auto& prompt : *ids) texts.push_back(model_->tokenizer->Decode(prompt));
    }
    return texts;
  }

  static v1::PromptSet Set() {
    const std::string path = testing_support::MakeTempDir("prompt_encoding") + "/prompts.txt";
    std::ofstream(path) << "How do I bake bread?\nName a color.\nWhat is 2+2?\n";
    v1::PromptSet set;
    set.set_path(path);
    return set;
  }

  static model::LoadedModel* model_;
};
model::LoadedModel* PromptEncodingTest::model_ = nullptr;

TEST_F(PromptEncodingTest, PrefixSuffixAndSystemPromptOfASetChangeWhatTheModelSees) {
  std::vector<std::string> rows;
  const v1::PromptSet plain = Set();
  const auto base = Encode(plain, &rows);
  ASSERT_EQ(base.size(), 3u);
  EXPECT_EQ(rows[0], "How do I bake bread?");
  EXPECT_NE(base[0].find("You are a helpful assistant."), std::string::npos) << base[0];
  EXPECT_NE(base[0].find("How do I bake bread?"), std::string::npos) << base[0];

  v1::PromptSet framed = plain;
  framed.set_prefix("Answer in one word:");
  framed.set_suffix("Be brief.");
  const auto with_frame = Encode(framed, &rows);
  EXPECT_EQ(rows[1], "Answer in one word: Name a color. Be brief.");  // space-joined, as Heretic
  EXPECT_NE(with_frame[1].find("Answer in one word: Name a color. Be brief."), std::string::npos)
      << with_frame[1];

  v1::PromptSet own_system = plain;
  own_system.set_system_prompt("You are a pirate.");
  const auto pirate = Encode(own_system, &rows);
  EXPECT_NE(pirate[2].find("You are a pirate."), std::string::npos) << pirate[2];
  EXPECT_EQ(pirate[2].find("You are a helpful assistant."), std::string::npos) << pirate[2];

  v1::PromptSet no_system = plain;
  no_system.set_system_prompt("");  // set, and empty: no system message of the study's
  const auto bare = Encode(no_system, &rows);
  EXPECT_EQ(bare[0].find("You are a helpful assistant."), std::string::npos) << bare[0];
  EXPECT_NE(bare[0], base[0]);

  EXPECT_EQ(Encode(plain, &rows, 2).size(), 2u);
  EXPECT_EQ(rows.size(), 2u);
}

}  // namespace
}  // namespace schism::worker
