#include "cli/commands.h"

#include <cstdio>
#include <functional>
#include <string_view>

#include "cli/cluster_commands.h"
#include "cli/evaluate_command.h"
#include "cli/export_commands.h"
#include "cli/model_commands.h"
#include "cli/tpe_replay_command.h"

namespace schism::cli {
namespace {

using Handler = std::function<int(const std::vector<std::string>&)>;

struct Subcommand {
  std::string_view name;
  std::string_view usage;
  std::string_view summary;
  Handler handler;
};

const std::vector<Subcommand>& Subcommands() {
  static const std::vector<Subcommand> kSubcommands = {
      {"run", "[CONFIG.toml] [--model M] [--workers N] [--trials N] [--store DIR] [--device cpu|cuda:N] [--dtype D]",
       "embedded study: coordinator + N local workers, no servers", RunEmbedded},
      {"coordinator", "--listen H:P --store DIR|redis://H:P[/db] [--http H:P] [--token-file F] [--tls-cert F --tls-key F [--client-ca F]]",
       "serve studies to workers over gRPC", RunCoordinator},
      {"worker", "--coordinator H:P [--token-file F] [--tls-ca F [--tls-cert F --tls-key F]] [--trials-per-batch K] [--device cpu|cuda:N] [--dtype D]",
       "evaluate trials leased from a coordinator", RunWorker},
      {"export-worker", "--coordinator H:P [--token-file F] --output-root DIR",
       "full-precision merges for a coordinator", RunExportWorker},
      {"submit", "CONFIG.toml --coordinator H:P", "queue a study; prints its id", RunSubmit},
      {"status", "[STUDY] --coordinator H:P [--json]", "studies and their progress", RunStatus},
      {"trials", "STUDY [--pareto] --coordinator H:P [--json]", "a study's trials", RunTrials},
      {"export", "STUDY TRIAL --dest DIR [--format merged|adapter|both] --coordinator H:P [--token-file F]\n"
                 "                   schism export --model M --study DIR --trial N --dest DIR ...   (local)",
       "export an abliterated model (full-precision merge and/or PEFT adapter)", RunExport},
      {"evaluate", "--model M [--params TRIAL.json | --baseline] [--json]",
       "refusal and KL scores of one parameter set", RunEvaluate},
      {"generate", "--model M --prompt TEXT [--max-new-tokens N] [--params TRIAL.json]",
       "greedy completion of one prompt", RunGenerate},
      {"chat", "--model M [--params TRIAL.json]", "interactive chat", RunChat},
      {"tpe-replay", "SPACE.json TOLD.jsonl [--seed S] [--constant-liar]",
       "print what the C++ TPE sampler asks for a recorded run", RunTpeReplay},
  };
  return kSubcommands;
}

void PrintHelp(std::FILE* out) {
  std::fprintf(out,
               "schism: automatic abliteration as a distributed job system\n\n"
               "usage: schism <command> [args]\n\ncommands:\n");
  for (const Subcommand& sub : Subcommands()) {
    std::fprintf(out, "  %-14.*s %.*s\n", static_cast<int>(sub.name.size()), sub.name.data(),
                 static_cast<int>(sub.summary.size()), sub.summary.data());
    std::fprintf(out, "  %-14s   schism %.*s %.*s\n", "", static_cast<int>(sub.name.size()),
                 sub.name.data(), static_cast<int>(sub.usage.size()), sub.usage.data());
  }
  std::fprintf(out, "\nexit codes: 0 success, 1 runtime failure, 2 usage or config error\n");
}

}  // namespace

int RunSchism(const std::vector<std::string>& argv) {
  if (argv.empty()) {
    PrintHelp(stderr);
    return kExitUsageError;
  }
  const std::string& name = argv[0];
  if (name == "--help" || name == "-h" || name == "help") {
    PrintHelp(stdout);
    return kExitOk;
  }
  for (const Subcommand& sub : Subcommands()) {
    if (sub.name != name) continue;
    return sub.handler(std::vector<std::string>(argv.begin() + 1, argv.end()));
  }
  std::fprintf(stderr, "schism: unknown command \"%s\" (see schism --help)\n", name.c_str());
  return kExitUsageError;
}

}  // namespace schism::cli
