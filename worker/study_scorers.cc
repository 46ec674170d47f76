#include "worker/study_scorers.h"

#include <cstdlib>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "common/prompt_set.h"
#include "common/scorers/judge_classifier.h"

namespace schism::worker {
namespace {

class ObjectiveScorer : public Scorer {
 public:
  std::string name() const override { return "KeywordRate+KLDivergence"; }
  absl::Status Score(model::TrialEvaluator& evaluator,
                     const std::vector<common::TrialParameters>& trials,
                     std::vector<v1::TrialScores>& scores) override {
    const std::vector<model::TrialScores> measured =
        trials.empty() ? std::vector<model::TrialScores>{evaluator.Baseline()}
                       : evaluator.Evaluate(trials);
    for (size_t i = 0; i < measured.size(); ++i) {
      scores[i].set_refusals(measured[i].refusals);
      scores[i].set_refusal_prompts(measured[i].refusal_prompts);
      scores[i].set_kl_divergence(measured[i].kl_divergence);
    }
    return absl::OkStatus();
  }
};

class JudgeScorer : public Scorer {
 public:
  // `classifier` null: the judge cannot be asked (`unavailable` says why; null and OK: this rank
  // leaves the endpoint to rank 0).
  JudgeScorer(std::unique_ptr<common::JudgeClassifier> classifier, absl::Status unavailable,
              std::vector<std::string> prompts)
      : classifier_(std::move(classifier)),
        unavailable_(std::move(unavailable)),
        prompts_(std::move(prompts)) {}

  std::string name() const override { return "Judge"; }
  // Generates (every rank); the requests wait for Conclude.
  absl::Status Score(model::TrialEvaluator& evaluator,
                     const std::vector<common::TrialParameters>& trials,
                     std::vector<v1::TrialScores>& scores) override {
    pending_.clear();
    // Full responses: early stopping ends a response at its first marker, which is exactly
    // what a judge is asked to see past ("I'm sorry to hear that. Here is how ...").
    const auto responses =
        evaluator.Respond(trials, evaluator.refusal_prompts(), /*early_stopping=*/false);
    const size_t n = prompts_.size();
    for (size_t t = 0; t < scores.size(); ++t) {
      scores[t].set_judge_prompts(static_cast<int>(n));
      if (!unavailable_.ok()) scores[t].set_judge_error(std::string(unavailable_.message()));
      std::vector<common::PromptResponse> batch;
      for (size_t i = 0; i < n; ++i) batch.push_back({prompts_[i], responses[t * n + i].text});
      pending_.push_back(std::move(batch));
    }
    return absl::OkStatus();
  }
  void Conclude(const std::vector<v1::TrialScores*>& scores) override {
    if (classifier_ != nullptr && unavailable_.ok()) {  // not a follower rank
      for (size_t t = 0; t < scores.size() && t < pending_.size(); ++t) {
        auto verdicts = classifier_->Classify(pending_[t]);
        if (!verdicts.ok()) {
          scores[t]->set_judge_error(std::string(verdicts.status().message()));
          continue;
        }
        int refusals = 0;
        for (bool v : *verdicts) refusals += v;
        scores[t]->set_judge_refusals(refusals);
        scores[t]->set_judge_unclear(classifier_->unclear());
      }
    }
    pending_.clear();
  }

 private:
  std::unique_ptr<common::JudgeClassifier> classifier_;
  absl::Status unavailable_;
  std::vector<std::string> prompts_;
  std::vector<std::vector<common::PromptResponse>> pending_;  // per entry of the last Score
};

class PerplexityScorer : public Scorer {
 public:
  explicit PerplexityScorer(std::vector<model::TokenIds> texts) : texts_(std::move(texts)) {}
  std::string name() const override { return "Perplexity"; }
  absl::Status Score(model::TrialEvaluator& evaluator,
                     const std::vector<common::TrialParameters>& trials,
                     std::vector<v1::TrialScores>& scores) override {
    const std::vector<double> values = evaluator.Perplexities(trials, texts_);
    for (size_t i = 0; i < values.size(); ++i) scores[i].set_perplexity(values[i]);
    return absl::OkStatus();
  }

 private:
  std::vector<model::TokenIds> texts_;
};

std::unique_ptr<Scorer> MakeJudge(const v1::JudgeScorer& spec, std::vector<std::string> prompts,
                                  bool contacts_judge) {
  if (!contacts_judge) return std::make_unique<JudgeScorer>(nullptr, absl::OkStatus(), prompts);
  common::JudgeOptions options;
  options.url = spec.url();
  options.model = spec.model();
  options.timeout_seconds = spec.timeout_seconds();
  options.instruction = spec.instruction();
  if (!spec.api_key_env().empty()) {
    const char* key = std::getenv(spec.api_key_env().c_str());
    if (key == nullptr || *key == '\0') {
      return std::make_unique<JudgeScorer>(nullptr,
                                           absl::FailedPreconditionError(absl::StrCat(
                                               "judge ", spec.url(), ": api_key_env ",
                                               spec.api_key_env(), " is not set on this worker")),
                                           std::move(prompts));
    }
    options.api_key = key;
  }
  auto classifier = common::JudgeClassifier::Create(std::move(options));
  if (!classifier.ok())
    return std::make_unique<JudgeScorer>(nullptr, classifier.status(), std::move(prompts));
  return std::make_unique<JudgeScorer>(std::move(*classifier), absl::OkStatus(),
                                       std::move(prompts));
}

absl::StatusOr<std::unique_ptr<Scorer>> MakePerplexity(const model::LoadedModel& model,
                                                       const v1::PerplexityScorer& spec) {
  const v1::PromptSet& set = spec.texts();
  auto lines = common::LoadPromptLines(set.path(), set.split(), set.column());
  if (!lines.ok())
    return absl::Status(lines.status().code(),
                        absl::StrCat("perplexity texts: ", lines.status().message()));
  const size_t max_tokens = spec.max_tokens() > 0 ? spec.max_tokens() : 128;
  std::vector<model::TokenIds> texts;
  bool any = false;
  for (std::string& line : *lines) {
    if (!set.prefix().empty()) line = set.prefix() + " " + line;
    if (!set.suffix().empty()) line = line + " " + set.suffix();
    model::TokenIds ids = model.tokenizer->Encode(line, model.tokenizer->spec().add_bos);
    if (ids.size() > max_tokens) ids.resize(max_tokens);
    any |= ids.size() >= 2;
    texts.push_back(std::move(ids));
  }
  if (!any) {
    return absl::InvalidArgumentError(absl::StrCat(
        "perplexity texts ", set.path(), ": no text has the two tokens a prediction needs"));
  }
  return std::make_unique<PerplexityScorer>(std::move(texts));
}

}  // namespace

std::unique_ptr<Scorer> MakeObjectiveScorer() { return std::make_unique<ObjectiveScorer>(); }

absl::StatusOr<std::vector<std::unique_ptr<Scorer>>> MakeOtherScorers(
    const model::LoadedModel& model, const v1::StudySpec& spec,
    std::vector<std::string> refusal_prompts, bool contacts_judge) {
  std::vector<std::unique_ptr<Scorer>> scorers;
  if (!spec.judge().url().empty())
    scorers.push_back(MakeJudge(spec.judge(), std::move(refusal_prompts), contacts_judge));
  if (!spec.perplexity().texts().path().empty()) {
    auto perplexity = MakePerplexity(model, spec.perplexity());
    if (!perplexity.ok()) return perplexity.status();
    scorers.push_back(std::move(*perplexity));
  }
  return scorers;
}

bool OnParetoFront(int64_t number, const v1::TrialScores& scores,
                   const google::protobuf::RepeatedPtrField<v1::Trial>& front) {
  const auto key = std::make_tuple(scores.refusals(), scores.kl_divergence(), number);
  for (const v1::Trial& p : front) {
    const v1::TrialScores& q = p.scores();
    if (q.refusals() <= scores.refusals() && q.kl_divergence() <= scores.kl_divergence() &&
        std::make_tuple(q.refusals(), q.kl_divergence(), p.number()) < key) {
      return false;
    }
  }
  return true;
}

}  // namespace schism::worker
