// The Jinja evaluator: renders a parsed template (jinja_parser.h) against its variables. It defines
// how each AST node evaluates or renders, the filters, tests and string/dict methods that Hugging
// Face chat templates use, and the globals every template can call: raise_exception(), namespace(),
// dict(), range(), strftime_now(). Values behave as in Python (jinja_value.h).
#ifndef SCHISM_COMMON_TEMPLATE_JINJA_EVALUATOR_H_
#define SCHISM_COMMON_TEMPLATE_JINJA_EVALUATOR_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/template/jinja_error.h"
#include "common/template/jinja_parser.h"
#include "common/template/jinja_value.h"

namespace schism::jinja::internal {

// Budgets that keep a hostile template (a chat template comes with the model file) from overflowing
// the stack, hanging or exhausting memory; real chat templates stay far below. The parser's nesting
// budget is kMaxNesting (jinja_parser.h).
constexpr int kMaxCallDepth = 100;            // macro calls in progress
constexpr int64_t kMaxSteps = 1'000'000;      // loop iterations and macro calls per render
constexpr size_t kMaxOutputBytes = 16 << 20;  // rendered text, and any one string built
constexpr int64_t kMaxRangeItems = 1'000'000;

// The state of one render: the variable scopes (innermost last), where output goes, and the budget
// counters.
struct Context {
  std::vector<std::unordered_map<std::string, Value>> scopes;
  std::string* out;
  int depth = 0;      // macro calls in progress
  int64_t steps = 0;  // loop iterations and macro calls so far

  void Step(int line) {
    if (++steps > kMaxSteps)
      Fail(line, absl::StrCat("rendering took more than ", kMaxSteps, " steps"));
  }
  void Emit(const std::string& text, int line) {
    if (out->size() + text.size() > kMaxOutputBytes)
      Fail(line, absl::StrCat("output grew past ", kMaxOutputBytes, " bytes"));
    *out += text;
  }

  Value Lookup(const std::string& name) const {
    for (auto it = scopes.rbegin(); it != scopes.rend(); ++it) {
      auto found = it->find(name);
      if (found != it->end()) return found->second;
    }
    return Value();
  }
  void Assign(const std::string& name, Value v) { scopes.back()[name] = std::move(v); }
};

// Renders `root` into *out, with `variables` as the template's global variables (next to the
// built-in functions). Throws TemplateError, or RaisedByTemplate when the template calls
// raise_exception().
void RenderTemplate(const Node& root, const ValueDict& variables, std::string* out);

}  // namespace schism::jinja::internal

#endif  // SCHISM_COMMON_TEMPLATE_JINJA_EVALUATOR_H_
