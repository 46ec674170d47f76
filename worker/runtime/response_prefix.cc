#include "worker/runtime/response_prefix.h"

#include <algorithm>
#include <optional>

#include "common/heretic_defaults.h"

namespace schism::model {

std::string CommonResponsePrefix(const Transformer& model, const tokenizer::BpeTokenizer& tokenizer,
                                 const std::vector<TokenIds>& prompts, const GreedyOptions& base) {
  std::optional<std::string> prefix;  // unknown until the first batch is complete
  const size_t batch = 16;
  for (size_t start = 0; start < prompts.size(); start += batch) {
    std::vector<TokenIds> chunk(prompts.begin() + start,
                                prompts.begin() + std::min(prompts.size(), start + batch));
    GreedyOptions options = base;
    if (prefix) {
      // A row that has left the current common prefix cannot extend it any further.
      options.stop_early = [&](size_t, const TokenIds& generated) {
        const std::string text = tokenizer.Decode(generated);
        const size_t n = std::min(text.size(), prefix->size());
        return text.compare(0, n, *prefix, 0, n) != 0 || text.size() >= prefix->size();
      };
    }
    for (const TokenIds& response : GreedyGenerate(model, chunk, options)) {
      const std::string text = tokenizer.Decode(response);
      if (!prefix) {
        prefix = text;
        continue;
      }
      size_t n = 0;
      while (n < prefix->size() && n < text.size() && (*prefix)[n] == text[n]) ++n;
      prefix->resize(n);
    }
    if (prefix && prefix->empty()) break;
  }
  std::string out = prefix.value_or("");
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

std::string ApplyChainOfThoughtSkip(const std::string& prefix) {
  for (const auto& [opener, closed] : common::DefaultChainOfThoughtSkips()) {
    if (prefix.rfind(opener, 0) == 0) return closed;
  }
  return prefix;
}

}  // namespace schism::model
