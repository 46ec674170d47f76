// The public entry point of the Jinja interpreter. The work is done by the lexer (jinja_lexer.h),
// the parser that builds the AST (jinja_parser.h) and the evaluator that renders it
// (jinja_evaluator.h); their errors are exceptions (jinja_error.h), which end here as absl::Status.
#include "common/template/jinja_template.h"

#include <exception>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/template/jinja_error.h"
#include "common/template/jinja_evaluator.h"
#include "common/template/jinja_lexer.h"
#include "common/template/jinja_parser.h"

namespace schism::jinja {

Template::Template() = default;
Template::~Template() = default;

absl::StatusOr<std::unique_ptr<Template>> Template::Parse(const std::string& source) {
  try {
    std::vector<internal::Token> tokens = internal::Lex(source);
    std::unique_ptr<Template> t(new Template());
    t->root_ = internal::ParseTemplate(std::move(tokens));
    return t;
  } catch (const internal::TemplateError& e) {
    return absl::InvalidArgumentError(e.what());
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("template: ", e.what()));
  }
}

absl::StatusOr<std::string> Template::Render(const Value& context) const {
  if (!context.is_dict()) return absl::InvalidArgumentError("template context must be a dict");
  std::string out;
  try {
    internal::RenderTemplate(*root_, context.dict(), &out);
  } catch (const internal::RaisedByTemplate& e) {
    return absl::InvalidArgumentError(absl::StrCat("chat template raised: ", e.what()));
  } catch (const internal::TemplateError& e) {
    return absl::InvalidArgumentError(e.what());
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("template: ", e.what()));
  }
  return out;
}

}  // namespace schism::jinja
