#include "cli/args.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

#include "absl/strings/str_split.h"
#include "cli/commands.h"

namespace schism::cli {
namespace {

const Command kCommand{
    .name = "try",
    .summary = "a command for the tests",
    .flags = {
        {"model", "M", "the model"}, {"trials", "N", "how many trials"}, {"json", "", "JSON"}}};

TEST(Args, ParsesValuesBooleansAndPositionals) {
  const Command with_config{.name = "try", .operands = {"[CONFIG.toml]"}, .flags = kCommand.flags};
  auto args = Args::Parse({"cfg.toml", "--model", "m.gguf", "--trials=12", "--json"}, with_config);
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_EQ(args->positionals(), std::vector<std::string>{"cfg.toml"});
  EXPECT_EQ(args->Get("model"), "m.gguf");
  EXPECT_EQ(*args->GetInt("trials"), 12);
  EXPECT_TRUE(args->Has("json"));
  EXPECT_FALSE(args->Get("missing").has_value());
}

TEST(Args, ErrorsNameTheFlag) {
  auto unknown = Args::Parse({"--modle", "x"}, kCommand);
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("--modle"), std::string::npos);
  EXPECT_FALSE(Args::Parse({"--model"}, kCommand).ok());
  EXPECT_FALSE(Args::Parse({"--json=yes"}, kCommand).ok());
  auto args = Args::Parse({"--trials", "ten"}, kCommand);
  ASSERT_TRUE(args.ok());
  auto trials = args->GetInt("trials");
  ASSERT_FALSE(trials.ok());
  EXPECT_NE(trials.status().message().find("--trials"), std::string::npos);
}

TEST(Args, RefusesAFlagNotInTheTableAndABooleanGivenAValue) {
  // --store is another command's flag: only the table given counts.
  auto other = Args::Parse({"--store", "dir"}, kCommand);
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().message(), "unknown flag --store");
  auto valued = Args::Parse({"--json=false"}, kCommand);
  ASSERT_FALSE(valued.ok());
  EXPECT_EQ(valued.status().message(), "flag --json takes no value");
  // A boolean flag never takes the next word: that stays a positional.
  const Command with_operand{.name = "try", .operands = {"STUDY"}, .flags = kCommand.flags};
  auto next = Args::Parse({"--json", "s1"}, with_operand);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_TRUE(next->Has("json"));
  EXPECT_EQ(next->positionals(), std::vector<std::string>{"s1"});
  auto missing = Args::Parse({"--trials"}, kCommand);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().message(), "flag --trials expects a value");
}

TEST(Args, RequiredFlagsAndOperandsAreCheckedUnlessHelpIsAsked) {
  const Command command{
      .name = "export",
      .operands = {"STUDY", "TRIAL", "[NOTE]"},
      .flags = {{"dest", "DIR", "where", /*required=*/true}, {"json", "", "JSON"}}};
  auto no_dest = Args::Parse({"s1", "3"}, command);
  ASSERT_FALSE(no_dest.ok());
  EXPECT_EQ(no_dest.status().message(), "flag --dest is required");
  auto one_operand = Args::Parse({"s1", "--dest", "d"}, command);
  ASSERT_FALSE(one_operand.ok());
  EXPECT_EQ(one_operand.status().message(), "expected STUDY TRIAL [NOTE]");
  auto four = Args::Parse({"s1", "3", "note", "extra", "--dest", "d"}, command);
  ASSERT_FALSE(four.ok());
  EXPECT_EQ(four.status().message(), "unexpected argument \"extra\"");
  EXPECT_TRUE(Args::Parse({"s1", "3", "--dest=d"}, command).ok());
  EXPECT_TRUE(Args::Parse({"s1", "3", "note", "--dest", "d"}, command).ok());
  // --help is in every table and waives what a run would need; unknown flags are still errors.
  auto help = Args::Parse({"--help"}, command);
  ASSERT_TRUE(help.ok()) << help.status();
  EXPECT_TRUE(help->Has("help"));
  EXPECT_FALSE(Args::Parse({"--help", "--bogus"}, command).ok());
  EXPECT_FALSE(Args::Parse({"--help=yes"}, command).ok());
}

TEST(Args, NoOperandsMeansAPositionalIsRefused) {
  auto args = Args::Parse({"--model", "m.gguf", "study.toml"}, kCommand);
  ASSERT_FALSE(args.ok());
  EXPECT_EQ(args.status().message(), "unexpected argument \"study.toml\"");
}

TEST(Args, HelpTextListsEveryFlagWithItsValueAndHelp) {
  const Command command{
      .name = "worker",
      .summary = "evaluate trials leased from a coordinator",
      .flags = JoinFlags({{{"coordinator", "H:P", "the coordinator's address", true}},
                          {{"threads", "T", "libtorch threads"}, {"json", "", "print JSON"}}}),
      .notes = "More words.\n"};
  const std::string help = HelpText(command);
  EXPECT_EQ(help.rfind("usage: schism worker --coordinator H:P [--threads T] [--json]\n", 0), 0u)
      << help;
  EXPECT_NE(help.find("\nevaluate trials leased from a coordinator\n"), std::string::npos) << help;
  for (const Flag& flag : command.flags) {
    const std::string listed =
        "  --" + flag.name + (flag.value_hint.empty() ? "" : " " + flag.value_hint);
    const size_t at = help.find("\n" + listed + " ");
    ASSERT_NE(at, std::string::npos) << flag.name << "\n" << help;
    const size_t end = help.find('\n', at + 1);
    EXPECT_NE(help.substr(at, end - at).find(flag.help), std::string::npos) << flag.name << "\n"
                                                                            << help;
  }
  EXPECT_NE(help.find("the coordinator's address (required)"), std::string::npos) << help;
  EXPECT_NE(help.find("\n  --help "), std::string::npos) << help;
  EXPECT_EQ(help.substr(help.size() - 13), "\nMore words.\n") << help;
}

TEST(Args, UsageLineWrapsUnderTheFirstOperandAndSynopsisKeepsOnlyRequiredFlags) {
  Command command{.name = "export", .operands = {"STUDY", "TRIAL"}};
  command.flags.push_back({"dest", "DIR", "where", /*required=*/true});
  for (int i = 0; i < 12; ++i)
    command.flags.push_back({"flag-" + std::to_string(i), "VALUE", "a flag"});
  const std::string usage = UsageLine(command);
  const std::vector<std::string> lines = absl::StrSplit(usage, '\n');
  ASSERT_GT(lines.size(), 1u) << usage;
  EXPECT_EQ(lines[0].rfind("usage: schism export STUDY TRIAL --dest DIR [--flag-0 VALUE]", 0), 0u)
      << usage;
  for (const std::string& line : lines) EXPECT_LE(line.size(), 100u) << usage;
  for (size_t i = 1; i < lines.size(); ++i) {
    EXPECT_EQ(lines[i].rfind(std::string(21, ' ') + "[--flag-", 0), 0u) << usage;  // under "STUDY"
  }
  for (int i = 0; i < 12; ++i)
    EXPECT_NE(usage.find("[--flag-" + std::to_string(i) + " VALUE]"), std::string::npos);
  EXPECT_EQ(Synopsis(command), "schism export STUDY TRIAL --dest DIR [flags]");
  EXPECT_EQ(Synopsis(Command{.name = "chat", .flags = {{"model", "M", "m", true}}}),
            "schism chat --model M");
}

TEST(Args, LongHelpIsWrappedAndLongFlagsGetTheirHelpOnTheNextLine) {
  const Command command{
      .name = "x",
      .flags = {
          {"a", "", std::string(40, 'a') + " " + std::string(40, 'b') + " " + std::string(40, 'c')},
          {"store", "DIR|redis://H:P[/db]|something-longer", "where studies are kept"}}};
  const std::string help = HelpText(command);
  for (absl::string_view line : absl::StrSplit(help, '\n')) EXPECT_LE(line.size(), 100u) << help;
  EXPECT_NE(help.find(std::string(40, 'b')), std::string::npos) << help;
  EXPECT_NE(help.find("  --store DIR|redis://H:P[/db]|something-longer\n"), std::string::npos)
      << help;
}

// The real table of `schism`.

const Command& Form(const std::string& name, bool through_coordinator = false) {
  for (const Command& command : Commands()) {
    if (command.name == name && command.form_flag.empty() != through_coordinator) return command;
  }
  ADD_FAILURE() << "no command " << name;
  return Commands().front();
}

TEST(CommandTable, EveryCommandListsEachOfItsFlagsOnceInItsHelpAndUsageLine) {
  std::set<std::string> names;
  for (const Command& command : Commands()) {
    names.insert(command.name);
    EXPECT_FALSE(command.summary.empty()) << command.name;
    EXPECT_TRUE(command.run) << command.name;
    const std::string help = HelpText(command);
    const std::string usage = UsageLine(command);
    std::set<std::string> flags;
    for (const Flag& flag : command.flags) {
      EXPECT_TRUE(flags.insert(flag.name).second)
          << command.name << " declares --" << flag.name << " twice";
      EXPECT_NE(flag.name, "help") << command.name;
      EXPECT_FALSE(flag.help.empty()) << command.name << " --" << flag.name;
      const std::string with_value =
          "--" + flag.name + (flag.value_hint.empty() ? "" : " " + flag.value_hint);
      // Its help follows on the same line, or on the next one after a long flag.
      EXPECT_TRUE(help.find("\n  " + with_value + " ") != std::string::npos ||
                  help.find("\n  " + with_value + "\n") != std::string::npos)
          << command.name << " --" << flag.name << "\n"
          << help;
      EXPECT_NE(help.find(flag.help.substr(0, 20)), std::string::npos)
          << command.name << " --" << flag.name;
      EXPECT_NE(usage.find(flag.required ? with_value : "[" + with_value + "]"), std::string::npos)
          << command.name << " --" << flag.name << "\n"
          << usage;
    }
    EXPECT_NE(help.find("\n  --help "), std::string::npos) << help;
    for (absl::string_view line : absl::StrSplit(help, '\n')) EXPECT_LE(line.size(), 100u) << line;
  }
  EXPECT_EQ(names, (std::set<std::string>{"run", "coordinator", "worker", "export-worker", "submit",
                                          "status", "trials", "export", "evaluate", "generate",
                                          "chat", "tpe-replay"}));
}

// What each command accepted before its flags moved into the table, so none is lost.
TEST(CommandTable, EveryFlagACommandTookBeforeTheTableIsStillTaken) {
  const std::vector<std::string> client = {"coordinator", "token-file", "tls-ca", "tls-cert",
                                           "tls-key"};
  auto with = [](std::vector<std::string> flags, std::initializer_list<std::string> more) {
    flags.insert(flags.end(), more);
    return flags;
  };
  const std::map<std::string, std::vector<std::string>> values = {
      {"run",
       {"model", "workers", "trials", "store", "trials-per-batch", "threads", "device", "dtype"}},
      {"coordinator",
       {"listen", "store", "token-file", "tls-cert", "tls-key", "client-ca", "http"}},
      {"worker", with(client, {"device", "dtype", "trials-per-batch", "threads"})},
      {"export-worker", with(client, {"output-root", "threads"})},
      {"submit", client},
      {"status", client},
      {"trials", client},
      {"export --coordinator",
       with(client, {"dest", "format", "dtype", "source-model", "max-shard-size"})},
      {"export",
       {"model", "study", "trial", "params", "directions", "dest", "output-root", "format", "dtype",
        "max-shard-size", "row-normalization"}},
      {"evaluate",
       {"model", "params", "quantization", "row-normalization", "refusal-prompts", "kl-prompts",
        "direction-prompts", "directions", "save-directions", "max-response-length", "batch-size",
        "threads", "system"}},
      {"generate",
       {"model", "prompt", "max-new-tokens", "system", "device", "dtype", "threads", "params",
        "directions", "quantization", "row-normalization"}},
      {"chat",
       {"model", "max-new-tokens", "system", "device", "dtype", "threads", "params", "directions",
        "quantization", "row-normalization"}},
      {"tpe-replay", {"seed"}},
  };
  const std::map<std::string, std::vector<std::string>> booleans = {
      {"run", {"help"}},
      {"coordinator", {"help"}},
      {"worker", {"help"}},
      {"export-worker", {"help"}},
      {"submit", {"json"}},
      {"status", {"json"}},
      {"trials", {"json", "pareto"}},
      {"export --coordinator", {"overwrite", "json", "no-wait"}},
      {"export", {"overwrite", "json", "help"}},
      {"evaluate", {"baseline", "json", "no-early-stopping", "help"}},
      {"generate", {"raw", "help"}},
      {"chat", {"raw", "help"}},
      {"tpe-replay", {"constant-liar", "help"}},
  };
  for (const auto& [name, flags] : values) {
    const Command& command =
        Form(name.substr(0, name.find(' ')), name.find(' ') != std::string::npos);
    for (const std::string& flag : flags) {
      // --help waives the required flags and operands, so each flag is tried alone.
      auto args = Args::Parse({"--" + flag, "value", "--help"}, command);
      ASSERT_TRUE(args.ok()) << name << ": " << args.status();
      EXPECT_EQ(args->Get(flag), "value") << name;
    }
    for (const std::string& flag : booleans.at(name)) {
      auto args = Args::Parse({"--" + flag, "--help"}, command);
      ASSERT_TRUE(args.ok()) << name << ": " << args.status();
      EXPECT_TRUE(args->Has(flag)) << name;
      auto valued = Args::Parse({"--" + flag + "=1", "--help"}, command);
      ASSERT_FALSE(valued.ok()) << name << " --" << flag;
      EXPECT_EQ(valued.status().message(), "flag --" + flag + " takes no value");
    }
  }
  // chat took generate's --prompt and ignored it; now it says so.
  auto prompt = Args::Parse({"--model", "m.gguf", "--prompt", "hi"}, Form("chat"));
  ASSERT_FALSE(prompt.ok());
  EXPECT_EQ(prompt.status().message(), "unknown flag --prompt");
}

TEST(CommandTable, RequiredFlagsAndOperandsOfTheRealCommands) {
  auto generate = Args::Parse({"--model", "m.gguf"}, Form("generate"));
  ASSERT_FALSE(generate.ok());
  EXPECT_EQ(generate.status().message(), "flag --prompt is required");
  auto evaluate = Args::Parse({"--model", "x.gguf", "--baseline", "study.toml"}, Form("evaluate"));
  ASSERT_FALSE(evaluate.ok());
  EXPECT_EQ(evaluate.status().message(), "unexpected argument \"study.toml\"");
  auto remote = Args::Parse({"s1", "--dest", "x", "--coordinator", "h:1"}, Form("export", true));
  ASSERT_FALSE(remote.ok());
  EXPECT_EQ(remote.status().message(), "expected STUDY TRIAL");
  EXPECT_TRUE(
      Args::Parse({"s1", "3", "--dest", "x", "--coordinator=h:1"}, Form("export", true)).ok());
  EXPECT_TRUE(Args::Parse({}, Form("run")).ok());
  EXPECT_TRUE(Args::Parse({"study.toml", "--trials", "4"}, Form("run")).ok());
  EXPECT_EQ(UsageLine(Form("export", true))
                .rfind("usage: schism export STUDY TRIAL --dest DIR --coordinator H:P", 0),
            0u);
  EXPECT_EQ(Synopsis(Form("coordinator")),
            "schism coordinator --store DIR|redis://H:P[/db] [flags]");
}

}  // namespace
}  // namespace schism::cli
