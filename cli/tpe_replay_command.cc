#include "cli/commands.h"

#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli/args.h"
#include "coordinator/tpe/replay.h"

namespace schism::cli {
namespace {

bool ReadWholeFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

}  // namespace

int RunTpeReplay(const Args& args) {
  std::string space_text, told_text;
  for (auto [path, out] :
       {std::pair{args.positionals()[0], &space_text}, {args.positionals()[1], &told_text}}) {
    if (!ReadWholeFile(path, out)) {
      std::fprintf(stderr, "schism tpe-replay: cannot read %s\n", path.c_str());
      return kExitUsageError;
    }
  }
  auto space = tpe::ParseReplaySpace(space_text);
  if (!space.ok()) {
    std::fprintf(stderr, "schism tpe-replay: %s: %s\n", args.positionals()[0].c_str(),
                 std::string(space.status().message()).c_str());
    return kExitUsageError;
  }
  auto seed = args.GetInt("seed");
  if (!seed.ok() || (*seed && (**seed < 0 || **seed > 0xFFFFFFFFL))) {
    std::fprintf(stderr, "schism tpe-replay: --seed must be an integer in [0, 2^32)\n");
    return kExitUsageError;
  }
  if (*seed) space->options.seed = static_cast<uint32_t>(**seed);
  if (args.Has("constant-liar")) space->options.constant_liar = true;
  auto lines = tpe::ReplayTold(*space, told_text);
  if (!lines.ok()) {
    std::fprintf(stderr, "schism tpe-replay: %s: %s\n", args.positionals()[1].c_str(),
                 std::string(lines.status().message()).c_str());
    return kExitUsageError;
  }
  for (const std::string& line : *lines) std::printf("%s\n", line.c_str());
  return kExitOk;
}

}  // namespace schism::cli
