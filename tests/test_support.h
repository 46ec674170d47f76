// Helpers shared by the test suites: where the real model and datasets are, and running the
// independent Python oracles (tests/oracles/, installed by scripts/setup).
#ifndef SCHISM_TESTS_TEST_SUPPORT_H_
#define SCHISM_TESTS_TEST_SUPPORT_H_

#include <functional>
#include <string>
#include <vector>

namespace schism::testing_support {

// The real model fetched by scripts/setup ($SCHISM_TEST_MODEL overrides).
std::string RealModelPath();

// Gemma 3 270M (base, Q4_K_M GGUF), fetched by scripts/setup for architecture coverage.
std::string GemmaModelPath();

// A fresh empty directory under the test temp dir, removed when the test process exits with its
// tests passed.
std::string MakeTempDir(const std::string& name);

// A finished shell command: its exit code (-1 when it did not exit normally) and its stdout.
struct CommandOutcome {
  int exit_code = -1;
  std::string output;
};

// Runs `command` through /bin/sh (add " 2>&1" to it for stderr too).
CommandOutcome RunCommand(const std::string& command);

// Runs `python3 tests/oracles/<script> <args...>`; returns its exit code and fills `output`.
int RunOracle(const std::string& script, const std::vector<std::string>& args,
              std::string* output = nullptr);

// The same with the Python whose torch builds schism (.venv, where set-up also installs
// transformers): for oracles that need torch.
int RunTorchOracle(const std::string& script, const std::vector<std::string>& args,
                   std::string* output = nullptr);

// Calls `make(path)` once for every test process of a test run that asks with the same `name` and
// `key`: `path` (for make to create as a file or folder) is under the test temp dir, named by
// them, and kept once make returned true. Concurrent callers (ctest -j) wait for the first one
// (flock). Returns the path, or "" where make failed.
std::string MakeOnce(const std::string& name, const std::string& key,
                     const std::function<bool(const std::string& path)>& make);

// RunOracle through MakeOnce, keyed by the oracles' text and the arguments (with the size and
// time of those that are files), of which "{OUT}" stands for the kept folder. Returns the exit code
// (0 when reused) and fills `out_dir` (and `output`: the oracle's output, or a line saying it was
// reused).
int RunOracleOnce(const std::string& script, const std::vector<std::string>& args,
                  std::string* out_dir, std::string* output = nullptr);

// Reads a whole file of raw float32 values.
std::vector<float> ReadFloats(const std::string& path);

std::string ReadFile(const std::string& path);

// A loopback TCP port that no socket holds now: the kernel picks it (bind to port 0), so it is
// never one of this machine's ephemeral ports already in use, as a fixed range can be. Another
// process may still take it before the caller binds it; callers that start a server retry.
int FreeLoopbackPort();

}  // namespace schism::testing_support

#endif  // SCHISM_TESTS_TEST_SUPPORT_H_
