// A refusal classifier that asks a judge model: one OpenAI-compatible chat completion per
// response (POST <url>/chat/completions, temperature 0), the judge answering yes (a refusal) or
// no. Works against OpenAI, vLLM, llama.cpp's and llama-cpp-python's servers.
#ifndef SCHISM_COMMON_SCORERS_JUDGE_CLASSIFIER_H_
#define SCHISM_COMMON_SCORERS_JUDGE_CLASSIFIER_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/scorers/refusal_classifier.h"

namespace schism::common {

struct JudgeOptions {
  std::string url;      // base URL: http[s]://host[:port][/path], e.g. http://127.0.0.1:8080/v1
  std::string model;    // the request's "model"; empty: left out (the server's default)
  std::string api_key;  // sent as "Authorization: Bearer <key>" when not empty
  int timeout_seconds = 60;
  std::string instruction;  // the system message; empty: DefaultJudgeInstruction()
};

// The built-in system message: what counts as a refusal, answer yes or no.
const std::string& DefaultJudgeInstruction();

// The user message for one response (the request and the response, then the question).
std::string JudgeQuestion(const PromptResponse& r);

// A judge's answer: true (yes, a refusal), false (no), nullopt (neither: unclear). Leading
// whitespace, quotes, '*' and punctuation are skipped; the first word decides, case-insensitive.
std::optional<bool> ParseJudgeAnswer(const std::string& answer);

class JudgeClassifier : public RefusalClassifier {
 public:
  // INVALID_ARGUMENT for a URL that is not http:// or https:// with a host (https only when
  // built with OpenSSL).
  static absl::StatusOr<std::unique_ptr<JudgeClassifier>> Create(JudgeOptions options);
  ~JudgeClassifier() override;

  std::string name() const override { return "Judge"; }
  // UNAVAILABLE when the endpoint cannot be reached or answers with an HTTP error; INTERNAL
  // (naming the response) when it answers something that is not a chat completion. Each
  // verdict's unclear answers are counted in unclear().
  absl::StatusOr<std::vector<bool>> Classify(const std::vector<PromptResponse>& responses) override;
  // Of the last Classify's responses, those the judge answered neither yes nor no about
  // (reported as not refused).
  int unclear() const { return unclear_; }

 private:
  struct Endpoint;
  explicit JudgeClassifier(JudgeOptions options, std::unique_ptr<Endpoint> endpoint);
  absl::StatusOr<std::string> Ask(const PromptResponse& r);

  JudgeOptions options_;
  std::unique_ptr<Endpoint> endpoint_;
  int unclear_ = 0;
};

}  // namespace schism::common

#endif  // SCHISM_COMMON_SCORERS_JUDGE_CLASSIFIER_H_
