// The Hugging Face metadata an export writes for a GGUF model: text that JSON cannot hold is an
// error naming the problem, not an uncaught nlohmann exception.
#include "worker/runtime/hf_metadata.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace schism::model {
namespace {

TEST(HfMetadata, TokenizerJsonOfAVocabularyThatIsNotUtf8IsAnError) {
  tokenizer::TokenizerSpec spec;
  spec.tokens = {"a", "b", "ab"};
  spec.merges = {"a b"};
  auto good = HfTokenizerJson(spec);
  ASSERT_TRUE(good.ok()) << good.status();
  const auto parsed = nlohmann::json::parse(*good);
  EXPECT_EQ(parsed["model"]["vocab"]["ab"], 2);
  EXPECT_EQ(parsed["model"]["merges"][0], nlohmann::json::array({"a", "b"}));

  spec.tokens[1] = "\xff\xfe";  // a hostile GGUF's token text
  auto bad = HfTokenizerJson(spec);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(bad.status().message().find("not valid UTF-8"), std::string::npos) << bad.status();
}

}  // namespace
}  // namespace schism::model
