#include "tests/test_support.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <unistd.h>
#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <vector>

#include "common/checksum.h"

namespace schism::testing_support {

std::string RealModelPath() {
  if (const char* path = std::getenv("SCHISM_TEST_MODEL")) return path;
  return std::string(SCHISM_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

std::string GemmaModelPath() {
  return std::string(SCHISM_SOURCE_DIR) + "/models/gemma-3-270m-q4_k_m.gguf";
}

namespace {
// The folders MakeTempDir made in this process, removed when it exits after passing tests (a
// failed test's folder stays for a look). Hundreds of tests leave 0.5 GB folders otherwise.
std::vector<std::string>& TempDirsToRemove() {
  static auto* dirs = new std::vector<std::string>();
  return *dirs;
}
const pid_t kTestProcess = ::getpid();

void RemoveTempDirsOfPassingTests() {
  // Only the test process itself: a forked child that exits must not pull folders away from it.
  if (::getpid() != kTestProcess || ::testing::UnitTest::GetInstance()->Failed()) return;
  for (const std::string& dir : TempDirsToRemove()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
}
}  // namespace

std::string MakeTempDir(const std::string& name) {
  const std::string dir =
      ::testing::TempDir() + "/schism_" + name + "_" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  if (TempDirsToRemove().empty()) std::atexit(RemoveTempDirsOfPassingTests);
  TempDirsToRemove().push_back(dir);
  return dir;
}

int FreeLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0)
    port = ntohs(address.sin_port);
  ::close(fd);
  return port;
}

namespace {
std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}
}  // namespace

CommandOutcome RunCommand(const std::string& command) {
  CommandOutcome outcome;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return outcome;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) {
    outcome.output.append(buffer.data(), n);
  }
  const int status = pclose(pipe);
  outcome.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return outcome;
}

namespace {

int RunPythonOracle(const std::string& python, const std::string& script,
                    const std::vector<std::string>& args, std::string* output) {
  std::string command =
      python + " " + ShellQuote(std::string(SCHISM_SOURCE_DIR) + "/tests/oracles/" + script);
  for (const std::string& arg : args) command += " " + ShellQuote(arg);
  command += " 2>&1";
  CommandOutcome outcome = RunCommand(command);
  if (output != nullptr) *output = outcome.output;
  return outcome.exit_code;
}

}  // namespace

int RunOracle(const std::string& script, const std::vector<std::string>& args,
              std::string* output) {
  return RunPythonOracle("python3", script, args, output);
}

std::string MakeOnce(const std::string& name, const std::string& key,
                     const std::function<bool(const std::string& path)>& make) {
  char hash[17];
  std::snprintf(hash, sizeof(hash), "%016llx",
                static_cast<unsigned long long>(common::Fnv1a64(key.data(), key.size())));
  const std::string path = ::testing::TempDir() + "/schism_once_" + name + "_" + hash;
  const int lock = ::open((path + ".lock").c_str(), O_CREAT | O_RDWR, 0644);
  if (lock >= 0) ::flock(lock, LOCK_EX);
  bool ok = std::filesystem::exists(path + ".done");
  if (!ok) {
    std::filesystem::remove_all(path);
    ok = make(path);
    if (ok) std::ofstream(path + ".done") << "made\n";
  }
  if (lock >= 0) ::close(lock);  // releases the flock
  return ok ? path : "";
}

int RunOracleOnce(const std::string& script, const std::vector<std::string>& args,
                  std::string* out_dir, std::string* output) {
  // Keyed by every oracle's text (they import each other) and by the arguments, with the size
  // and modification time of those that name files (a model replaced in place).
  const std::string oracles = std::string(SCHISM_SOURCE_DIR) + "/tests/oracles";
  std::vector<std::string> scripts;
  for (const auto& entry : std::filesystem::directory_iterator(oracles)) {
    if (entry.path().extension() == ".py") scripts.push_back(entry.path().string());
  }
  std::sort(scripts.begin(), scripts.end());
  std::string key = script;
  for (const std::string& path : scripts) key += '\0' + ReadFile(path);
  for (const std::string& arg : args) {
    key += '\0' + arg;
    std::error_code error;
    if (std::filesystem::is_regular_file(arg, error)) {
      key +=
          ' ' + std::to_string(std::filesystem::file_size(arg, error)) + ' ' +
          std::to_string(std::filesystem::last_write_time(arg, error).time_since_epoch().count());
    }
  }
  int rc = 0;
  if (output != nullptr) *output = "reused the oracle's earlier output";
  *out_dir = MakeOnce(script.substr(0, script.rfind('.')), key, [&](const std::string& dir) {
    std::vector<std::string> with_out = args;
    for (std::string& arg : with_out) {
      if (arg == "{OUT}") arg = dir;
    }
    rc = RunOracle(script, with_out, output);
    return rc == 0;
  });
  return rc;
}

int RunTorchOracle(const std::string& script, const std::vector<std::string>& args,
                   std::string* output) {
  return RunPythonOracle(ShellQuote(SCHISM_TORCH_PYTHON), script, args, output);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<float> ReadFloats(const std::string& path) {
  const std::string bytes = ReadFile(path);
  std::vector<float> out(bytes.size() / sizeof(float));
  std::memcpy(out.data(), bytes.data(), out.size() * sizeof(float));
  return out;
}

}  // namespace schism::testing_support
