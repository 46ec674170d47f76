#include "cli/args.h"

#include <gtest/gtest.h>

namespace schism::cli {
namespace {

const FlagSpec kSpec{{"model", "trials"}, {"json"}};

TEST(Args, ParsesValuesBooleansAndPositionals) {
  auto args = Args::Parse({"cfg.toml", "--model", "m.gguf", "--trials=12", "--json"}, kSpec);
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_EQ(args->positionals(), std::vector<std::string>{"cfg.toml"});
  EXPECT_EQ(args->Get("model"), "m.gguf");
  EXPECT_EQ(*args->GetInt("trials"), 12);
  EXPECT_TRUE(args->Has("json"));
  EXPECT_FALSE(args->Get("missing").has_value());
}

TEST(Args, ErrorsNameTheFlag) {
  auto unknown = Args::Parse({"--modle", "x"}, kSpec);
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("--modle"), std::string::npos);
  EXPECT_FALSE(Args::Parse({"--model"}, kSpec).ok());
  EXPECT_FALSE(Args::Parse({"--json=yes"}, kSpec).ok());
  auto args = Args::Parse({"--trials", "ten"}, kSpec);
  ASSERT_TRUE(args.ok());
  auto trials = args->GetInt("trials");
  ASSERT_FALSE(trials.ok());
  EXPECT_NE(trials.status().message().find("--trials"), std::string::npos);
}

}  // namespace
}  // namespace schism::cli
