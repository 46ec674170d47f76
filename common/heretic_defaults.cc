#include "common/heretic_defaults.h"

namespace schism::common {

const std::vector<std::pair<std::string, std::string>>& DefaultChainOfThoughtSkips() {
  static const std::vector<std::pair<std::string, std::string>> kSkips = {
      {"<think>", "<think></think>"},
      {"<|channel|>analysis<|message|>",
       "<|channel|>analysis<|message|><|end|><|start|>assistant<|channel|>final<|message|>"},
      {"<thought>", "<thought></thought>"},
      {"[THINK]", "[THINK][/THINK]"},
  };
  return kSkips;
}

const std::vector<std::string>& HereticDefaultBenchmarkTasks() {
  static const std::vector<std::string> kTasks = {
      "agieval", "bbh",  "commonsense_qa", "eq_bench", "gsm8k",     "hellaswag",
      "ifeval",  "mmlu", "mmlu_pro",       "piqa",     "winogrande"};
  return kTasks;
}

}  // namespace schism::common
