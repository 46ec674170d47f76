#include "worker/runtime/response_prefix.h"

#include <gtest/gtest.h>

#include "tests/test_support.h"
#include "worker/runtime/model_loader.h"
#include "worker/runtime/trial_evaluator.h"

namespace schism::model {
namespace {

TEST(ResponsePrefix, IsTheCommonStartOfTheGreedyResponses) {
  auto model = LoadModel(testing_support::RealModelPath());
  ASSERT_TRUE(model.ok()) << model.status();
  auto prompts = EncodeChatPrompts(*model, {"Name a color.", "Name a colour.", "Say hello."},
                                   "You are a helpful assistant.", "");
  ASSERT_TRUE(prompts.ok());
  GreedyOptions options;
  options.max_new_tokens = 12;
  options.stop_ids = model->stop_ids;
  options.pad_id = 2;
  const auto& t = *model->transformer;
  std::vector<std::string> responses;
  for (const auto& r : GreedyGenerate(t, *prompts, options))
    responses.push_back(model->tokenizer->Decode(r));
  // One prompt: its whole response; several: the longest shared start of all of them.
  std::string alone = responses[0];
  while (!alone.empty() && alone.back() == ' ') alone.pop_back();
  EXPECT_EQ(CommonResponsePrefix(t, *model->tokenizer, {(*prompts)[0]}, options), alone);
  const std::string shared = CommonResponsePrefix(t, *model->tokenizer, *prompts, options);
  for (const auto& r : responses) EXPECT_EQ(r.rfind(shared, 0), 0u) << r << " vs prefix " << shared;
  size_t n = 0;
  while (n < responses[0].size() && n < responses[1].size() && n < responses[2].size() &&
         responses[0][n] == responses[1][n] && responses[1][n] == responses[2][n]) {
    ++n;
  }
  std::string expected = responses[0].substr(0, n);
  while (!expected.empty() && expected.back() == ' ') expected.pop_back();
  EXPECT_EQ(shared, expected);
}

TEST(ResponsePrefix, ChainOfThoughtOpenersBecomeClosedBlocks) {
  EXPECT_EQ(ApplyChainOfThoughtSkip("<think>\nLet me think"), "<think></think>");
  EXPECT_EQ(ApplyChainOfThoughtSkip("[THINK]hmm"), "[THINK][/THINK]");
  EXPECT_EQ(ApplyChainOfThoughtSkip("Sure,"), "Sure,");
}

}  // namespace
}  // namespace schism::model
