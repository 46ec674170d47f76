#include "cli/commands.h"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "cli/args.h"
#include "cli/reproduction.h"
#include "common/env.h"
#include "common/prompt_set.h"
#include "worker/runtime/device.h"
#include "worker/runtime/directions.h"
#include "worker/runtime/trial_evaluator.h"

namespace schism::cli {
namespace {

int Fail(int code, const std::string& message) { return cli::Fail("evaluate", code, message); }

// The flags a reproduce.json decides (its settings), refused beside --reproduce.
constexpr const char* kSetByReproduction[] = {
    "baseline",   "params",          "quantization",        "row-normalization",
    "directions", "refusal-prompts", "kl-prompts",          "direction-prompts",
    "batch-size", "system",          "max-response-length", "no-early-stopping"};

// schism evaluate --reproduce FILE: the recorded trial scored as a study's trial would be, next
// to what Heretic measured for it.
int RunEvaluateReproduction(const Args& args, const std::string& file) {
  for (const char* flag : kSetByReproduction) {
    if (args.Has(flag)) {
      return UsageError(args, absl::StrCat("--", flag,
                                           " does not apply with --reproduce (the file's "
                                           "settings decide it)"));
    }
  }
  if (args.Has("responses")) {
    return UsageError(args,
                      "--responses is not available with --reproduce (it scores the trial as a "
                      "study's worker does, which keeps no responses)");
  }
  auto threads = args.GetInt("threads");
  if (!threads.ok()) return Fail(kExitUsageError, std::string(threads.status().message()));
  model::SetComputeThreads(static_cast<int>(threads->value_or(0)));
  auto r = LoadReproduction(file, args.Get("model"));
  if (!r.ok()) return Fail(kExitUsageError, std::string(r.status().message()));
  const auto start = std::chrono::steady_clock::now();
  worker::TrialWorker worker(worker::WorkerOptions{});
  auto prepared = PrepareReproduction(worker, &*r);
  if (!prepared.ok()) return Fail(kExitRuntimeError, std::string(prepared.status().message()));
  if (auto path = args.Get("save-directions")) {
    auto directions = model::ParseDirections(prepared->artifact(), "directions");
    if (!directions.ok())
      return Fail(kExitRuntimeError, std::string(directions.status().message()));
    if (auto s = model::SaveDirections(*path, *directions); !s.ok()) {
      return Fail(kExitRuntimeError, std::string(s.message()));
    }
  }
  v1::WorkItem item;
  item.set_study_id("reproduce");
  *item.mutable_spec() = r->spec;
  *item.mutable_evaluate()->add_trials() = r->trial;
  const auto evaluated_from = std::chrono::steady_clock::now();
  auto report = worker.Evaluate(item, [&](const std::string&) -> absl::StatusOr<std::string> {
    return prepared->artifact();
  });
  if (!report.ok()) return Fail(kExitRuntimeError, std::string(report.status().message()));
  const auto done = std::chrono::steady_clock::now();
  const v1::TrialScores& scores = report->results(0).scores();
  const auto& heretic = r->source.metrics;
  if (args.Has("json")) {
    nlohmann::json out = {
        {"refusals", scores.refusals()},
        {"refusal_prompts", scores.refusal_prompts()},
        {"kl_divergence", scores.kl_divergence()},
        {"baseline_refusals", prepared->baseline_refusals()},
        {"response_prefix", r->spec.response_prefix()},
        {"preparation_seconds", std::chrono::duration<double>(evaluated_from - start).count()},
        {"evaluation_seconds", std::chrono::duration<double>(done - evaluated_from).count()}};
    if (heretic) {
      out["heretic"] = {{"refusals", heretic->refusals},
                        {"refusal_prompts", heretic->n_bad_prompts},
                        {"kl_divergence", heretic->kl_divergence},
                        {"baseline_refusals", heretic->base_refusals}};
    }
    std::printf("%s\n", out.dump().c_str());
    return kExitOk;
  }
  std::printf("refusals: %d/%d (baseline %d)\nkl_divergence: %.6f\n", scores.refusals(),
              scores.refusal_prompts(), prepared->baseline_refusals(), scores.kl_divergence());
  if (heretic) {
    std::printf("heretic measured: refusals %lld/%lld (baseline %lld), kl_divergence %.6f\n",
                static_cast<long long>(heretic->refusals),
                static_cast<long long>(heretic->n_bad_prompts),
                static_cast<long long>(heretic->base_refusals), heretic->kl_divergence);
  }
  return kExitOk;
}

}  // namespace

int RunEvaluate(const Args& args) {
  // No positionals (Args::Parse refuses them): evaluate reads no config file, only the flags.
  if (auto file = args.Get("reproduce")) return RunEvaluateReproduction(args, *file);
  auto model_path = args.Get("model");
  if (!model_path) return UsageError(args, "give --model M (or --reproduce FILE)");
  if (args.Has("baseline") == args.Has("params")) {
    return UsageError(args, "give exactly one of --baseline and --params TRIAL.json");
  }
  std::map<std::string, long> counts = {{"refusal-prompts", 100},   {"kl-prompts", 100},
                                        {"direction-prompts", 400}, {"max-response-length", 100},
                                        {"batch-size", 32},         {"threads", 0}};
  for (auto& [flag, value] : counts) {
    auto parsed = args.GetInt(flag);
    if (!parsed.ok()) return Fail(kExitUsageError, std::string(parsed.status().message()));
    if (*parsed) value = **parsed;
    if (value < 0 || (value == 0 && flag != "threads"))
      return Fail(kExitUsageError, "--" + flag + " must be positive");
  }
  model::SetComputeThreads(static_cast<int>(counts["threads"]));
  model::EvaluatorOptions options;
  options.max_response_length = static_cast<int>(counts["max-response-length"]);
  options.batch_size = static_cast<int>(counts["batch-size"]);
  options.early_stopping = !args.Has("no-early-stopping");
  auto row_norm = model::ParseRowNormalization(args.Get("row-normalization").value_or("full"));
  if (!row_norm.ok()) return Fail(kExitUsageError, std::string(row_norm.status().message()));
  options.row_normalization = *row_norm;
  model::LoadOptions load_options;
  const std::string quantization = args.Get("quantization").value_or("none");
  if (quantization == "nf4" || quantization == "bnb_4bit") {
    load_options.quantization = model::Quantization::kNf4;
  } else if (quantization != "none") {
    return Fail(kExitUsageError,
                "--quantization: expected none, nf4 or bnb_4bit, got \"" + quantization + "\"");
  }
  std::optional<common::TrialParameters> trial;
  if (auto params_path = args.Get("params")) {
    std::ifstream in(*params_path);
    if (!in) return Fail(kExitUsageError, "cannot read " + *params_path);
    std::stringstream ss;
    ss << in.rdbuf();
    auto parsed = common::TrialParametersFromJson(ss.str());
    if (!parsed.ok())
      return Fail(kExitUsageError, *params_path + ": " + std::string(parsed.status().message()));
    trial = *parsed;
  }

  auto model = model::LoadModel(*model_path, load_options);
  if (!model.ok()) return Fail(kExitRuntimeError, std::string(model.status().message()));
  const std::string data = common::DefaultDataDir();
  const std::string system = args.Get("system").value_or(kDefaultSystemPrompt);
  auto load_prompts = [&](const std::string& file,
                          long n) -> absl::StatusOr<std::vector<model::TokenIds>> {
    auto lines = common::LoadPromptLines(data + "/" + file, "[:" + std::to_string(n) + "]");
    if (!lines.ok()) return lines.status();
    return model::EncodeChatPrompts(*model, *lines, system, "");
  };
  // The lines are kept for --responses; the prompts are those lines in the chat template.
  auto refusal_lines = common::LoadPromptLines(
      data + "/harmful_test.txt", "[:" + std::to_string(counts["refusal-prompts"]) + "]");
  if (!refusal_lines.ok())
    return Fail(kExitRuntimeError, std::string(refusal_lines.status().message()));
  auto refusal_prompts = model::EncodeChatPrompts(*model, *refusal_lines, system, "");
  if (!refusal_prompts.ok())
    return Fail(kExitRuntimeError, std::string(refusal_prompts.status().message()));
  auto kl_prompts = load_prompts("harmless_test.txt", counts["kl-prompts"]);
  if (!kl_prompts.ok()) return Fail(kExitRuntimeError, std::string(kl_prompts.status().message()));

  const auto start = std::chrono::steady_clock::now();
  at::Tensor directions;
  if (auto path = args.Get("directions")) {
    auto loaded = model::LoadDirections(*path);
    if (!loaded.ok()) return Fail(kExitRuntimeError, std::string(loaded.status().message()));
    directions = *loaded;
  } else {
    const long n = counts["direction-prompts"];
    auto good = load_prompts("harmless_train.txt", n);
    auto bad = load_prompts("harmful_train.txt", n);
    if (!good.ok() || !bad.ok()) return Fail(kExitRuntimeError, "cannot load direction prompts");
    const int32_t pad = model->tokenizer->spec().pad_id.value_or(0);
    const int batch = options.batch_size;
    directions =
        model::RefusalDirections(model::ResidualMeans(*model->transformer, *good, pad, batch),
                                 model::ResidualMeans(*model->transformer, *bad, pad, batch),
                                 /*orthogonalize=*/true);
  }
  if (auto path = args.Get("save-directions")) {
    if (auto s = model::SaveDirections(*path, directions); !s.ok()) {
      return Fail(kExitRuntimeError, std::string(s.message()));
    }
  }
  auto evaluator = model::TrialEvaluator::Create(*model, directions, std::move(*refusal_prompts),
                                                 std::move(*kl_prompts), options);
  if (!evaluator.ok()) return Fail(kExitRuntimeError, std::string(evaluator.status().message()));
  const auto prepared = std::chrono::steady_clock::now();
  std::vector<model::TrialEvaluator::Response> responses;
  model::TrialScores scores =
      trial ? (*evaluator)->Evaluate({*trial}, &responses)[0] : (*evaluator)->Baseline(&responses);
  const auto done = std::chrono::steady_clock::now();
  if (auto path = args.Get("responses")) {
    // One JSON object a refusal prompt, in order: what Heretic's print_responses shows.
    std::ofstream out(*path);
    for (size_t i = 0; i < responses.size(); ++i) {
      out << nlohmann::json{{"prompt", (*refusal_lines)[i]},
                            {"response", responses[i].text},
                            {"refusal", responses[i].refusal}}
                 .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
          << "\n";
    }
    if (!out) return Fail(kExitRuntimeError, *path + ": write failed");
  }
  const double eval_seconds = std::chrono::duration<double>(done - prepared).count();
  const double prep_seconds = std::chrono::duration<double>(prepared - start).count();
  if (args.Has("json")) {
    nlohmann::json out = {{"refusals", scores.refusals},
                          {"refusal_prompts", scores.refusal_prompts},
                          {"kl_divergence", scores.kl_divergence},
                          {"evaluation_seconds", eval_seconds},
                          {"preparation_seconds", prep_seconds}};
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("refusals: %d/%d\nkl_divergence: %.6f\n", scores.refusals, scores.refusal_prompts,
                scores.kl_divergence);
    std::fflush(stdout);
    std::fprintf(stderr, "[directions + baseline %.1f s, evaluation %.1f s]\n", prep_seconds,
                 eval_seconds);
  }
  return kExitOk;
}

}  // namespace schism::cli
