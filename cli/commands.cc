#include "cli/commands.h"

#include <cstdio>

#include "absl/strings/str_cat.h"

namespace schism::cli {
namespace {

// Flags that several commands share.

// Every command that talks to a coordinator as its client.
std::vector<Flag> ClientFlags() {
  return {{"coordinator", "H:P", "the coordinator's gRPC address", /*required=*/true},
          {"token-file", "F", "a file whose first line is the coordinator's token"},
          {"tls-ca", "F", "connect over TLS, trusting this CA certificate (PEM)"},
          {"tls-cert", "F", "with --tls-ca: present this client certificate (PEM; mutual TLS)"},
          {"tls-key", "F", "the private key of --tls-cert (PEM)"}};
}

Flag ThreadsFlag() { return {"threads", "T", "libtorch threads (default 0: one per core)"}; }

// Every command that runs a model.
std::vector<Flag> DeviceFlags() {
  return {{"device", "cpu|cuda:N", "where the model runs (default cpu)"},
          {"dtype", "float32|bfloat16|float16",
           "compute dtype (default bfloat16 on CUDA, float32 on the CPU)"},
          ThreadsFlag()};
}

Flag RowNormalizationFlag(const std::string& default_value) {
  return {"row-normalization", "none|pre|full",
          "row normalization of the adapted weights (" + default_value + ")"};
}

Flag QuantizationFlag() {
  return {"quantization", "none|nf4",
          "load the weights as NF4 (bnb_4bit is an alias; default none)"};
}

Flag SystemFlag() {
  return {"system", "TEXT",
          absl::StrCat("the system prompt (default \"", kDefaultSystemPrompt, "\")")};
}

// generate and chat, after --model and generate's --prompt.
std::vector<Flag> SessionFlags() {
  return JoinFlags(
      {{{"max-new-tokens", "N", "the longest reply, in tokens (default 256)"},
        SystemFlag(),
        {"raw", "", "send the prompt as is, without the model's chat template"}},
       DeviceFlags(),
       {QuantizationFlag(),
        {"params", "TRIAL.json", "abliterate with this trial's parameters (needs --directions)"},
        {"directions", "FILE",
         "the refusal directions of --params (from schism evaluate "
         "--save-directions, or a study's)"},
        RowNormalizationFlag("default full")}});
}

// The written model of both forms of export.
std::vector<Flag> ExportFlags() {
  return {{"format", "merged|adapter|both",
           "what to write (default: the study's [export] format, else merged)"},
          {"dtype", "float32|bfloat16|float16",
           "dtype of the written weights (default: the study's, else the "
           "source's)"},
          {"max-shard-size", "SIZE",
           "largest safetensors file, e.g. 2GB (default: the study's max_shard_size, "
           "else 5GB)"}};
}

constexpr const char* kTpeReplayNotes =
    R"(Replays a recorded sequence of asks and tells through schism's TPE sampler (a port of Optuna
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
)";

// Whether this binary can run `command` (schism-coordinator has no model runtime).
bool Available(const Command& command) { return !command.needs_runtime || ModelRuntimeLinked(); }

// The forms of command `name` this binary has: none for an unknown command, two for export, else
// one.
std::vector<const Command*> Forms(const std::string& name) {
  std::vector<const Command*> forms;
  for (const Command& command : Commands()) {
    if (command.name == name && Available(command)) forms.push_back(&command);
  }
  return forms;
}

// The form argv asks for: the one whose form flag it holds, else the one without a form flag.
const Command& SelectForm(const std::vector<const Command*>& forms,
                          const std::vector<std::string>& argv) {
  const Command* plain = forms.front();
  for (const Command* form : forms) {
    if (form->form_flag.empty()) {
      plain = form;
      continue;
    }
    const std::string flag = "--" + form->form_flag;
    for (const std::string& arg : argv) {
      if (arg == flag || arg.rfind(flag + "=", 0) == 0) return *form;
    }
  }
  return *plain;
}

void PrintCommandHelp(const std::vector<const Command*>& forms) {
  for (size_t i = 0; i < forms.size(); ++i)
    std::printf("%s%s", i > 0 ? "\n" : "", HelpText(*forms[i]).c_str());
}

void PrintHelp(std::FILE* out) {
  std::fprintf(
      out,
      "schism: automatic abliteration as a distributed job system\n\n"
      "usage: schism <command> [args]    (schism <command> --help lists its flags)\n\ncommands:\n");
  std::string left_out;  // the commands with no form this binary has
  for (const Command& command : Commands()) {
    if (!Available(command)) {
      if (Forms(command.name).empty() &&
          left_out.find(" " + command.name + ",") == std::string::npos)
        left_out += " " + command.name + ",";
      continue;
    }
    std::fprintf(out, "  %-14s %s\n  %-14s   %s\n", command.name.c_str(), command.summary.c_str(),
                 "", Synopsis(command).c_str());
  }
  if (!left_out.empty()) {
    left_out.pop_back();
    std::fprintf(out,
                 "\nThis is schism-coordinator: it has no model runtime (libtorch); the commands "
                 "that run\na model (%s) are in the schism binary.\n",
                 left_out.c_str() + 1);
  }
  std::fprintf(out, "\nexit codes: 0 success, 1 runtime failure, 2 usage or config error\n");
}

int PrintUsageError(const Command& command, const std::string& message) {
  std::fprintf(stderr, "schism %s: %s\n%s\n", command.name.c_str(), message.c_str(),
               UsageLine(command).c_str());
  return kExitUsageError;
}

// An unknown name, or, in schism-coordinator, a command that runs a model.
int NotACommand(const std::string& name) {
  for (const Command& command : Commands()) {
    if (command.name != name) continue;
    std::fprintf(stderr,
                 "schism-coordinator: \"%s\" runs a model, and this binary has no model runtime "
                 "(libtorch); use the schism binary (the schism-worker image)\n",
                 name.c_str());
    return kExitUsageError;
  }
  std::fprintf(stderr, "schism: unknown command \"%s\" (see schism --help)\n", name.c_str());
  return kExitUsageError;
}

}  // namespace

const std::vector<Command>& Commands() {
  static const std::vector<Command> kCommands = {
      {.name = "run",
       .operands = {"[CONFIG.toml]"},
       .summary = "embedded study: coordinator + N local workers, no servers",
       .flags =
           JoinFlags({{{"model", "M", "the model to abliterate; overrides the config's"},
                       {"workers", "N",
                        "local workers, each evaluating trials on its own (1 to 64, default 1)"},
                       {"trials", "N", "trials in the study; overrides the config's n_trials"},
                       {"trials-per-batch", "K",
                        "trials a worker leases and evaluates in one batch; overrides "
                        "the config's trials_per_lease"},
                       {"store", "DIR",
                        "the study store (default: the config's study_checkpoint_dir, else "
                        "schism-study)"}},
                      DeviceFlags()}),
       .run = RunEmbedded,
       .needs_runtime = true,
       .notes = "CONFIG.toml takes Heretic's config keys; without it, a quick study of "
                "SmolLM2-135M on the\n"
                "bundled prompts. Run the same command again to resume the store's newest "
                "unfinished study.\n"},
      {.name = "coordinator",
       .summary = "serve studies to workers over gRPC",
       .flags = {{"store", "DIR|redis://H:P[/db]",
                  "where studies are kept: a journal folder or a Redis server",
                  /*required=*/true},
                 {"listen", "H:P", "the gRPC address to serve on (default 127.0.0.1:50051)"},
                 {"http", "H:P", "also serve the dashboard, /metrics, /healthz and /readyz here"},
                 {"token-file", "F",
                  "a file whose first line is the token clients and workers must present"},
                 {"tls-cert", "F", "serve over TLS with this certificate (PEM; needs --tls-key)"},
                 {"tls-key", "F", "the private key of --tls-cert (PEM)"},
                 {"client-ca", "F",
                  "with TLS: require client certificates signed by this CA (mutual TLS)"}},
       .run = RunCoordinator},
      {.name = "worker",
       .summary = "evaluate trials leased from a coordinator",
       .flags = JoinFlags(
           {ClientFlags(),
            {{"trials-per-batch", "K", "trials to lease and evaluate in one batch (default 1)"}},
            DeviceFlags(),
            {{"tensor-parallel", "N",
              "split the model over N ranks, one process each (default 1); without --tp-rank "
              "(and outside srun) this process starts the other N-1 on this host, one GPU each"},
             {"tp-rank", "R", "this process is rank R of --tensor-parallel N (needs --tp-master)"},
             {"tp-master", "HOST:PORT", "where rank 0 serves the ranks' rendezvous"}}}),
       .run = RunWorker,
       .needs_runtime = true},
      {.name = "export-worker",
       .summary = "full-precision merges for a coordinator",
       .flags = JoinFlags({ClientFlags(),
                           {{"output-root", "DIR",
                             "exports are written inside this folder (their --dest is "
                             "relative to it)",
                             /*required=*/true},
                            ThreadsFlag()}}),
       .run = RunExportWorker,
       .needs_runtime = true},
      {.name = "submit",
       .operands = {"CONFIG.toml"},
       .summary = "queue a study; prints its id",
       .flags = JoinFlags(
           {ClientFlags(), {{"json", "", "print the reply as JSON: {\"study_id\": ...}"}}}),
       .run = RunSubmit},
      {.name = "status",
       .operands = {"[STUDY]"},
       .summary = "studies and their progress",
       .flags = JoinFlags({ClientFlags(), {{"json", "", "one JSON object a study"}}}),
       .run = RunStatus},
      {.name = "trials",
       .operands = {"STUDY"},
       .summary = "a study's trials",
       .flags = JoinFlags({ClientFlags(),
                           {{"pareto", "", "only the Pareto-optimal trials"},
                            {"json", "", "one JSON object a trial"}}}),
       .run = RunTrials},
      {.name = "export",
       .summary = "a trial's abliterated model at full precision (merged and/or a PEFT adapter)",
       .flags = JoinFlags(
           {{{"dest", "DIR", "the folder to write (relative to --output-root when given)",
              /*required=*/true},
             {"study", "DIR", "a study folder of the embedded store (<store>/<study id>)"},
             {"trial", "N", "the trial of --study to export"},
             {"model", "M",
              "the source: a Hugging Face folder or a .gguf file (dequantized); "
              "default with --study: the study's model"},
             {"params", "TRIAL.json",
              "without --study: the trial's parameters (needs --model and "
              "--directions)"},
             {"directions", "FILE",
              "the refusal directions of --params (schism evaluate "
              "--save-directions)"},
             {"reproduce", "FILE",
              "the trial of a Heretic reproduce.json, its directions computed here from the "
              "file's settings (--model: a local copy of the recorded model)"},
             {"output-root", "DIR", "--dest must stay inside this folder"}},
            ExportFlags(),
            {RowNormalizationFlag("default: the study's, else full"),
             {"overwrite", "", "replace what is at --dest"},
             {"json", "", "print the files written as JSON"}}}),
       .run = RunExport,
       .needs_runtime = true,
       .notes =
           "Give --study DIR --trial N, --model M --params TRIAL.json --directions FILE, or\n"
           "--reproduce FILE (a Heretic reproduce.json). Writes one tensor at a time. Pass the\n"
           "full-precision model as --model when the study ran on a quantized copy.\n"},
      {.name = "export",
       .operands = {"STUDY", "TRIAL"},
       .summary = "the same through a coordinator: an export worker writes it, this waits",
       .flags = JoinFlags(
           {{{"dest", "DIR", "where to write, relative to the export worker's --output-root",
              /*required=*/true}},
            ClientFlags(),
            ExportFlags(),
            {{"source-model", "M",
              "the full-precision model as the export worker sees it (default: the study's)"},
             {"overwrite", "", "replace an export already at --dest"},
             {"no-wait", "", "print the export's id and return once it is queued"},
             {"json", "", "print the export job as JSON"}}}),
       .run = RunRemoteExport,
       .form_flag = "coordinator"},
      {.name = "evaluate",
       .summary = "refusal and KL scores of one parameter set",
       .flags = {{"model", "M",
                  "the model, a .gguf file or a Hugging Face folder (required without "
                  "--reproduce; with it, a local copy of the recorded model)"},
                 {"reproduce", "FILE",
                  "score the trial of a Heretic reproduce.json (versions 1 and 2) with its "
                  "settings"},
                 {"baseline", "", "score the unmodified model (or give --params)"},
                 {"params", "TRIAL.json", "score this parameter set (or give --baseline)"},
                 {"json", "", "print the scores and timings as one JSON object"},
                 QuantizationFlag(),
                 RowNormalizationFlag("default full"),
                 {"refusal-prompts", "N", "harmful_test prompts scored for refusals (default 100)"},
                 {"kl-prompts", "N", "harmless_test prompts for the KL divergence (default 100)"},
                 {"direction-prompts", "N",
                  "harmless_train and harmful_train prompts each for the refusal "
                  "directions (default 400)"},
                 {"directions", "FILE", "load the refusal directions instead of computing them"},
                 {"save-directions", "FILE",
                  "write the refusal directions used (for --directions of evaluate, "
                  "generate, chat and export)"},
                 {"responses", "FILE",
                  "write each refusal prompt's response and verdict, one JSON object a line "
                  "(with early stopping a response ends at its first refusal marker)"},
                 {"no-early-stopping", "",
                  "generate whole responses, not only until a refusal marker appears"},
                 {"max-response-length", "N", "tokens generated per refusal prompt (default 100)"},
                 {"batch-size", "N", "prompts of each trial per forward pass (default 32)"},
                 ThreadsFlag(),
                 SystemFlag()},
       .run = RunEvaluate,
       .needs_runtime = true,
       .notes = "Evaluate reads no config file. Prompts come from $SCHISM_DATA (default "
                "../shared/datasets):\n"
                "refusal = harmful_test, KL = harmless_test, directions = harmless_train / "
                "harmful_train.\n"},
      {.name = "generate",
       .summary = "greedy completion of one prompt",
       .flags = JoinFlags({{{"model", "M", "the model, a .gguf file", /*required=*/true},
                            {"prompt", "TEXT", "the user's message", /*required=*/true}},
                           SessionFlags()}),
       .run = RunGenerate,
       .needs_runtime = true},
      {.name = "chat",
       .summary = "interactive chat",
       .flags = JoinFlags(
           {{{"model", "M", "the model, a .gguf file", /*required=*/true}}, SessionFlags()}),
       .run = RunChat,
       .needs_runtime = true,
       .notes = "Reads one message a line from stdin; /reset starts over, /exit or Ctrl-D ends.\n"},
      {.name = "tpe-replay",
       .operands = {"SPACE.json", "TOLD.jsonl"},
       .summary = "print what the C++ TPE sampler asks for a recorded run",
       .flags = {{"seed", "S", "the sampler's seed, in [0, 2^32); overrides the space file's"},
                 {"constant-liar", "", "turn the constant liar on, whatever the space file says"}},
       .run = RunTpeReplay,
       .notes = kTpeReplayNotes},
  };
  return kCommands;
}

int Fail(std::string_view command, int code, const std::string& message) {
  std::fprintf(stderr, "schism %.*s: %s\n", static_cast<int>(command.size()), command.data(),
               message.c_str());
  return code;
}

int UsageError(const Args& args, const std::string& message) {
  return PrintUsageError(args.command(), message);
}

int RunSchism(const std::vector<std::string>& argv) {
  if (argv.empty()) {
    PrintHelp(stderr);
    return kExitUsageError;
  }
  const std::string& name = argv[0];
  if (name == "--help" || name == "-h" || name == "help") {
    if (argv.size() == 1) {
      PrintHelp(stdout);
      return kExitOk;
    }
    const std::vector<const Command*> forms = Forms(argv[1]);  // `schism help COMMAND`
    if (forms.empty()) return NotACommand(argv[1]);
    PrintCommandHelp(forms);
    return kExitOk;
  }
  const std::vector<const Command*> forms = Forms(name);
  if (forms.empty()) return NotACommand(name);
  const std::vector<std::string> rest(argv.begin() + 1, argv.end());
  const Command& command = SelectForm(forms, rest);
  auto args = Args::Parse(rest, command);
  if (!args.ok()) return PrintUsageError(command, std::string(args.status().message()));
  if (args->Has("help")) {
    PrintCommandHelp(forms);  // both forms of export: one help for the one name
    return kExitOk;
  }
  return command.run(*args);
}

}  // namespace schism::cli
