// Errors of the Jinja interpreter, shared by the lexer, parser and evaluator. They are exceptions
// so that a failure deep inside a recursive parse or render unwinds in one step, and they never
// leave the interpreter: Template::Parse and Template::Render (jinja_template.cc) turn them into
// absl::Status.
#ifndef SCHISM_COMMON_TEMPLATE_JINJA_ERROR_H_
#define SCHISM_COMMON_TEMPLATE_JINJA_ERROR_H_

#include <stdexcept>
#include <string>

#include "absl/strings/str_cat.h"

namespace schism::jinja::internal {

// A template that does not parse, or fails while rendering; the message names the template line.
struct TemplateError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// raise_exception("...") in a template: the template rejected its input.
struct RaisedByTemplate : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] inline void Fail(int line, const std::string& message) {
  throw TemplateError(absl::StrCat("template line ", line, ": ", message));
}

// Counts one level of nesting for as long as it lives, and fails past `limit` levels (the parser's
// kMaxNesting, the evaluator's kMaxCallDepth).
struct NestingGuard {
  int& depth;
  NestingGuard(int& d, int line, int limit) : depth(d) {
    if (++depth > limit) {
      --depth;
      Fail(line, absl::StrCat("nested deeper than ", limit, " levels"));
    }
  }
  ~NestingGuard() { --depth; }
};

}  // namespace schism::jinja::internal

#endif  // SCHISM_COMMON_TEMPLATE_JINJA_ERROR_H_
