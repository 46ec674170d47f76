// An interpreter for the subset of Jinja that Hugging Face chat templates use, rendering the way
// transformers' apply_chat_template does (jinja2 with trim_blocks, lstrip_blocks and loop
// controls): {{ }}, {% if/elif/else %}, {% for ... in ... [if ...] %} with loop.*,
// {% set %} (also ns.attr and block form), {% macro %}, break/continue, {# #}, whitespace
// control (-), filters, tests, string/dict methods, slicing, namespace(), range(),
// raise_exception().
#ifndef SCHISM_COMMON_TEMPLATE_JINJA_TEMPLATE_H_
#define SCHISM_COMMON_TEMPLATE_JINJA_TEMPLATE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/template/jinja_value.h"

namespace schism::jinja {

struct Node;

class Template {
 public:
  // Syntax errors name the line and what was expected.
  static absl::StatusOr<std::unique_ptr<Template>> Parse(const std::string& source);
  ~Template();

  // `context` must be a dict; its keys are the template's global variables. raise_exception()
  // in the template becomes an InvalidArgument error with the template's message.
  absl::StatusOr<std::string> Render(const Value& context) const;

 private:
  Template();
  std::unique_ptr<Node> root_;
};

}  // namespace schism::jinja

#endif  // SCHISM_COMMON_TEMPLATE_JINJA_TEMPLATE_H_
