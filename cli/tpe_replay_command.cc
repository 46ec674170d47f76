#include "cli/tpe_replay_command.h"

#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli/args.h"
#include "cli/commands.h"
#include "coordinator/tpe/replay.h"

namespace schism::cli {
namespace {

constexpr const char* kHelp = R"(usage: schism tpe-replay SPACE.json TOLD.jsonl [--seed S] [--constant-liar]

Replays a recorded sequence of asks and tells through schism's TPE sampler (a port of Optuna
4.8's multivariate MOTPE) and prints, for each ask, the parameters it chooses:
  T<number> {"param": value, ...}      (keys sorted, floats as Python repr)

SPACE.json: {"directions": ["minimize", "minimize"], "n_startup_trials": 10,
             "n_ei_candidates": 128, "seed": 42, "constant_liar": false,
             "params": [{"name": "x", "type": "float", "low": 0, "high": 1},
                        {"name": "k", "type": "int", "low": 1, "high": 64, "log": true},
                        {"name": "s", "type": "float", "low": 0, "high": 2, "step": 0.25},
                        {"name": "c", "type": "categorical", "choices": ["a", "b"]}]}
            params are listed in the order the objective suggests them.
TOLD.jsonl: one event per line:
            {"ask": 0}
            {"tell": 0, "state": "COMPLETE", "values": [0.4, 1.2]}
            {"tell": 1, "state": "PRUNED"}      {"tell": 2, "state": "FAIL"}
--seed and --constant-liar override the space file.
)";

bool ReadWholeFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

}  // namespace

int RunTpeReplay(const std::vector<std::string>& argv) {
  auto args = Args::Parse(argv, FlagSpec{{"seed"}, {"constant-liar", "help"}});
  if (!args.ok()) {
    std::fprintf(stderr, "schism tpe-replay: %s\n%s", std::string(args.status().message()).c_str(), kHelp);
    return kExitUsageError;
  }
  if (args->Has("help")) {
    std::fputs(kHelp, stdout);
    return kExitOk;
  }
  if (args->positionals().size() != 2) {
    std::fprintf(stderr, "schism tpe-replay: expected SPACE.json and TOLD.jsonl\n%s", kHelp);
    return kExitUsageError;
  }
  std::string space_text, told_text;
  for (auto [path, out] : {std::pair{args->positionals()[0], &space_text}, {args->positionals()[1], &told_text}}) {
    if (!ReadWholeFile(path, out)) {
      std::fprintf(stderr, "schism tpe-replay: cannot read %s\n", path.c_str());
      return kExitUsageError;
    }
  }
  auto space = tpe::ParseReplaySpace(space_text);
  if (!space.ok()) {
    std::fprintf(stderr, "schism tpe-replay: %s: %s\n", args->positionals()[0].c_str(),
                 std::string(space.status().message()).c_str());
    return kExitUsageError;
  }
  auto seed = args->GetInt("seed");
  if (!seed.ok() || (*seed && (**seed < 0 || **seed > 0xFFFFFFFFL))) {
    std::fprintf(stderr, "schism tpe-replay: --seed must be an integer in [0, 2^32)\n");
    return kExitUsageError;
  }
  if (*seed) space->options.seed = static_cast<uint32_t>(**seed);
  if (args->Has("constant-liar")) space->options.constant_liar = true;
  auto lines = tpe::ReplayTold(*space, told_text);
  if (!lines.ok()) {
    std::fprintf(stderr, "schism tpe-replay: %s: %s\n", args->positionals()[1].c_str(),
                 std::string(lines.status().message()).c_str());
    return kExitUsageError;
  }
  for (const std::string& line : *lines) std::printf("%s\n", line.c_str());
  return kExitOk;
}

}  // namespace schism::cli
