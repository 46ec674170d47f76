// Runs the real `schism` binary as a child process.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace {

struct Outcome {
  int exit_code;
  std::string output;  // stdout and stderr together
};

Outcome RunSchism(const std::string& args) {
  const std::string command = std::string(SCHISM_BINARY) + " " + args + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  Outcome outcome{-1, ""};
  if (pipe == nullptr) return outcome;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) outcome.output.append(buffer.data(), n);
  const int status = pclose(pipe);
  outcome.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return outcome;
}

TEST(SchismBinary, HelpListsEverySubcommandOfTheDesign) {
  Outcome help = RunSchism("--help");
  EXPECT_EQ(help.exit_code, 0);
  for (const char* sub : {"run", "coordinator", "worker", "export-worker", "submit", "status",
                          "trials", "export", "evaluate", "generate", "chat", "tpe-replay"}) {
    EXPECT_NE(help.output.find(std::string("\n  ") + sub + " "), std::string::npos) << sub;
  }
}

TEST(SchismBinary, UnknownCommandIsAUsageError) {
  Outcome outcome = RunSchism("frobnicate");
  EXPECT_EQ(outcome.exit_code, 2);
  EXPECT_NE(outcome.output.find("unknown command \"frobnicate\""), std::string::npos);
  EXPECT_EQ(RunSchism("").exit_code, 2);
}

TEST(SchismBinary, UnimplementedCommandExitsTwoAndSaysSo) {
  Outcome outcome = RunSchism("export-worker --coordinator localhost:1");
  EXPECT_EQ(outcome.exit_code, 2);
  EXPECT_NE(outcome.output.find("not implemented yet"), std::string::npos);
}

}  // namespace
