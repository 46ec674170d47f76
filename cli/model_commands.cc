#include "cli/commands.h"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include <ATen/ATen.h>
#include <thread>

#include "absl/strings/str_cat.h"
#include "cli/args.h"
#include "common/template/chat_template.h"
#include "worker/runtime/device.h"
#include "worker/runtime/directions.h"
#include "worker/runtime/generator.h"
#include "worker/runtime/model_loader.h"
#include "worker/runtime/trial_evaluator.h"

namespace schism::cli {
namespace {

// What generate and chat share: the loaded model, its template, and the run settings.
struct Session {
  model::LoadedModel model;
  std::unique_ptr<model::TrialEvaluator> evaluator;  // set with --params: holds the adapters
  std::optional<common::TrialParameters> trial;
  std::optional<jinja::ChatTemplate> chat_template;
  std::string system_prompt = kDefaultSystemPrompt;
  int max_new_tokens = 256;
};

// Parses the shared flags and loads the model; returns an exit code on failure.
std::optional<int> OpenSession(const char* command, const Args& args, Session* session) {
  auto model_path = args.Get("model");  // required
  if (args.Has("params") != args.Has("directions")) {
    std::fprintf(stderr,
                 "schism %s: --params needs --directions FILE (from schism evaluate "
                 "--save-directions or a study's artifacts)\n",
                 command);
    return kExitUsageError;
  }
  auto max_tokens = args.GetInt("max-new-tokens");
  auto threads = args.GetInt("threads");
  for (const auto* parsed : {&max_tokens, &threads}) {
    if (!parsed->ok()) {
      std::fprintf(stderr, "schism %s: %s\n", command,
                   std::string(parsed->status().message()).c_str());
      return kExitUsageError;
    }
  }
  if (*max_tokens) session->max_new_tokens = static_cast<int>(**max_tokens);
  if (session->max_new_tokens <= 0) {
    std::fprintf(stderr, "schism %s: --max-new-tokens must be positive\n", command);
    return kExitUsageError;
  }
  if (*threads) model::SetComputeThreads(static_cast<int>(**threads));
  model::LoadOptions options;
  auto device = model::ParseDevice(args.Get("device").value_or("cpu"));
  if (!device.ok()) {
    std::fprintf(stderr, "schism %s: --device: %s\n", command,
                 std::string(device.status().message()).c_str());
    return kExitUsageError;
  }
  auto dtype = model::ParseComputeDtype(args.Get("dtype").value_or(""), *device);
  if (!dtype.ok()) {
    std::fprintf(stderr, "schism %s: --dtype: %s\n", command,
                 std::string(dtype.status().message()).c_str());
    return kExitUsageError;
  }
  options.device = *device;
  options.dtype = *dtype;
  if (auto system = args.Get("system")) session->system_prompt = *system;
  const std::string quantization = args.Get("quantization").value_or("none");
  if (quantization == "nf4" || quantization == "bnb_4bit") {
    options.quantization = model::Quantization::kNf4;
  } else if (quantization != "none") {
    std::fprintf(stderr, "schism %s: --quantization: expected none or nf4\n", command);
    return kExitUsageError;
  }
  model::EvaluatorOptions evaluator_options;
  if (auto params_path = args.Get("params")) {
    std::ifstream in(*params_path);
    std::stringstream text;
    text << in.rdbuf();
    auto trial = common::TrialParametersFromJson(text.str());
    if (!in || !trial.ok()) {
      std::fprintf(stderr, "schism %s: %s: %s\n", command, params_path->c_str(),
                   in ? std::string(trial.status().message()).c_str() : "cannot read");
      return kExitUsageError;
    }
    session->trial = *trial;
    auto row_norm = model::ParseRowNormalization(args.Get("row-normalization").value_or("full"));
    if (!row_norm.ok()) {
      std::fprintf(stderr, "schism %s: %s\n", command,
                   std::string(row_norm.status().message()).c_str());
      return kExitUsageError;
    }
    evaluator_options.row_normalization = *row_norm;
  }

  auto loaded = model::LoadModel(*model_path, options);
  if (!loaded.ok()) {
    std::fprintf(stderr, "schism %s: %s\n", command,
                 std::string(loaded.status().message()).c_str());
    return kExitRuntimeError;
  }
  session->model = std::move(*loaded);
  if (session->trial) {
    auto directions = model::LoadDirections(*args.Get("directions"));
    if (!directions.ok()) {
      std::fprintf(stderr, "schism %s: %s\n", command,
                   std::string(directions.status().message()).c_str());
      return kExitRuntimeError;
    }
    auto evaluator =
        model::TrialEvaluator::Create(session->model, *directions, {}, {}, evaluator_options);
    if (!evaluator.ok()) {
      std::fprintf(stderr, "schism %s: %s\n", command,
                   std::string(evaluator.status().message()).c_str());
      return kExitRuntimeError;
    }
    session->evaluator = std::move(*evaluator);
  }
  if (!args.Has("raw")) {
    auto tmpl = jinja::ChatTemplate::Create(session->model.chat_template, session->model.bos_token,
                                            session->model.eos_token);
    if (!tmpl.ok()) {
      std::fprintf(stderr, "schism %s: %s (use --raw to send the prompt as is)\n", command,
                   std::string(tmpl.status().message()).c_str());
      return kExitRuntimeError;
    }
    session->chat_template = std::move(*tmpl);
  }
  return std::nullopt;
}

struct ReplyStats {
  size_t prompt_tokens = 0;
  size_t new_tokens = 0;
  double seconds = 0;
};

// Greedy reply to `prompt_text`, streamed to stdout as it is decoded.
ReplyStats StreamReply(const Session& session, const std::string& prompt_text, std::string* reply) {
  const auto& model = session.model;
  ReplyStats stats;
  model::TokenIds prompt = model.tokenizer->Encode(prompt_text, /*add_bos=*/true);
  stats.prompt_tokens = prompt.size();
  tokenizer::StreamingDecoder stream(*model.tokenizer);
  model::GreedyOptions options;
  options.max_new_tokens = session.max_new_tokens;
  options.stop_ids = model.stop_ids;
  options.pad_id = model.tokenizer->spec().pad_id.value_or(0);
  model::AdapterBatch adapters;
  if (session.evaluator) {
    adapters = session.evaluator->BuildAdapters({*session.trial});
    adapters.row_trial = at::zeros({1}, at::kLong);
    options.adapters = &adapters;
  }
  options.stop_early = [&](size_t, const model::TokenIds& generated) {
    const std::string piece = stream.Push(generated.back());
    *reply += piece;
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    return false;
  };
  const auto start = std::chrono::steady_clock::now();
  auto out = model::GreedyGenerate(*model.transformer, {prompt}, options);
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  stats.new_tokens = out[0].size();
  const std::string rest = stream.Flush();
  *reply += rest;
  std::fwrite(rest.data(), 1, rest.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  return stats;
}

absl::StatusOr<std::string> RenderConversation(const Session& session,
                                               const std::vector<jinja::ChatMessage>& turns) {
  if (!session.chat_template) return turns.back().content;
  std::vector<jinja::ChatMessage> messages;
  if (!session.system_prompt.empty()) messages.push_back({"system", session.system_prompt});
  messages.insert(messages.end(), turns.begin(), turns.end());
  return session.chat_template->Render(messages, /*add_generation_prompt=*/true);
}

}  // namespace

int RunGenerate(const Args& args) {
  Session session;
  if (auto exit = OpenSession("generate", args, &session)) return *exit;
  auto text = RenderConversation(session, {{"user", *args.Get("prompt")}});  // --prompt is required
  if (!text.ok()) {
    std::fprintf(stderr, "schism generate: %s\n", std::string(text.status().message()).c_str());
    return kExitRuntimeError;
  }
  std::string reply;
  ReplyStats stats = StreamReply(session, *text, &reply);
  std::fprintf(stderr, "[%zu prompt tokens, %zu new tokens in %.2f s: %.1f tokens/s]\n",
               stats.prompt_tokens, stats.new_tokens, stats.seconds,
               stats.seconds > 0 ? stats.new_tokens / stats.seconds : 0.0);
  return kExitOk;
}

int RunChat(const Args& args) {
  Session session;
  if (auto exit = OpenSession("chat", args, &session)) return *exit;
  std::fprintf(stderr, "Chatting with %s. /reset starts over, /exit or Ctrl-D ends.\n",
               args.Get("model")->c_str());
  std::vector<jinja::ChatMessage> turns;
  std::string line;
  while (true) {
    std::fputs("> ", stdout);
    std::fflush(stdout);
    if (!std::getline(std::cin, line) || line == "/exit") break;
    if (line == "/reset") {
      turns.clear();
      continue;
    }
    if (line.empty()) continue;
    turns.push_back({"user", line});
    auto text = RenderConversation(session, turns);
    if (!text.ok()) {
      std::fprintf(stderr, "schism chat: %s\n", std::string(text.status().message()).c_str());
      turns.pop_back();
      continue;
    }
    std::string reply;
    StreamReply(session, *text, &reply);
    turns.push_back({"assistant", reply});
  }
  return kExitOk;
}

}  // namespace schism::cli
