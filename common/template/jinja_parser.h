// The Jinja AST and the parser that builds it from the lexer's tokens (jinja_lexer.h). The parser
// is recursive descent following jinja2's precedence (ternary < or < and < not < comparisons/in/is
// < + - < ~ < * / // % < ** < unary < postfix); `foo.0` is foo[0], a parenthesised tuple becomes a
// list, adjacent string literals concatenate.
//
// The nodes only hold what was parsed: how an expression evaluates (Expr::Eval) and how a statement
// renders (Node::Render) is defined in jinja_evaluator.cc.
#ifndef SCHISM_COMMON_TEMPLATE_JINJA_PARSER_H_
#define SCHISM_COMMON_TEMPLATE_JINJA_PARSER_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/template/jinja_lexer.h"
#include "common/template/jinja_value.h"

namespace schism::jinja {

namespace internal {

struct Context;  // the state of one render (jinja_evaluator.h)

// How a statement ended: normally, or at {% break %} / {% continue %}, which unwinds to the loop.
enum class Flow { kNormal, kBreak, kContinue };

struct Expr {
  int line = 0;
  virtual ~Expr() = default;
  virtual Value Eval(Context& ctx) const = 0;
};
using ExprPtr = std::unique_ptr<Expr>;

}  // namespace internal

// A statement, or a body of statements; jinja_template.h declares it for Template's root.
struct Node {
  int line = 0;
  virtual ~Node() = default;
  virtual internal::Flow Render(internal::Context& ctx) const = 0;
};

namespace internal {

using NodePtr = std::unique_ptr<Node>;

// ---- expressions -----------------------------------------------------------------------------

struct Literal : Expr {
  Value value;
  Value Eval(Context& ctx) const override;
};

struct Name : Expr {
  std::string name;
  Value Eval(Context& ctx) const override;
};

struct ListExpr : Expr {  // [a, b] and tuples (a, b)
  std::vector<ExprPtr> items;
  Value Eval(Context& ctx) const override;
};

struct DictExpr : Expr {
  std::vector<std::pair<ExprPtr, ExprPtr>> items;
  Value Eval(Context& ctx) const override;
};

struct AttrExpr : Expr {  // object.name
  ExprPtr object;
  std::string name;
  Value Eval(Context& ctx) const override;
};

struct IndexExpr : Expr {  // object[key]
  ExprPtr object, key;
  Value Eval(Context& ctx) const override;
};

struct SliceExpr : Expr {  // object[start:stop:step], any of the three may be absent
  ExprPtr object, start, stop, step;
  Value Eval(Context& ctx) const override;
};

struct CallExpr : Expr {  // callee(args, name=value); on an AttrExpr callee also a method call
  ExprPtr callee;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  Value Eval(Context& ctx) const override;
};

struct FilterExpr : Expr {  // input | name(args)
  ExprPtr input;
  std::string name;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  Value Eval(Context& ctx) const override;
};

struct TestExpr : Expr {  // input is [not] name(args)
  ExprPtr input;
  std::string name;
  bool negated = false;
  std::vector<ExprPtr> args;
  Value Eval(Context& ctx) const override;
};

struct UnaryExpr : Expr {  // op is "not", "-" or "+"
  std::string op;
  ExprPtr operand;
  Value Eval(Context& ctx) const override;
};

struct BinaryExpr : Expr {  // op is the operator's text; "not in" for the two-word one
  std::string op;
  ExprPtr left, right;
  Value Eval(Context& ctx) const override;
};

struct TernaryExpr : Expr {  // then_value if condition [else else_value]
  ExprPtr condition, then_value, else_value;
  Value Eval(Context& ctx) const override;
};

// ---- statements ------------------------------------------------------------------------------

struct Body : Node {
  std::vector<NodePtr> children;
  Flow Render(Context& ctx) const override;
};

struct TextNode : Node {
  std::string text;
  Flow Render(Context& ctx) const override;
};

struct OutputNode : Node {  // {{ expr }}
  ExprPtr expr;
  Flow Render(Context& ctx) const override;
};

struct IfNode : Node {
  std::vector<std::pair<ExprPtr, std::unique_ptr<Body>>> branches;  // if, then each elif
  std::unique_ptr<Body> otherwise;
  Flow Render(Context& ctx) const override;
};

struct ForNode : Node {  // {% for targets in iterable [if filter] %} body [{% else %} otherwise]
  std::vector<std::string> targets;
  ExprPtr iterable, filter;
  std::unique_ptr<Body> body, otherwise;
  Flow Render(Context& ctx) const override;
};

struct SetNode : Node {
  std::vector<std::string> targets;  // names, or {namespace, attribute} when is_attribute
  bool is_attribute = false;
  ExprPtr value;
  std::unique_ptr<Body> block;  // {% set x %}...{% endset %}
  Flow Render(Context& ctx) const override;
};

struct LoopControlNode : Node {  // {% break %} or {% continue %}
  Flow flow;
  Flow Render(Context& ctx) const override;
};

struct MacroNode : Node {
  std::string name;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // aligned with params; null when required
  std::shared_ptr<Body> body;
  Flow Render(Context& ctx) const override;
};

// ---- parser ----------------------------------------------------------------------------------

// Parser budget: bodies and expressions nest at most this deep, so that a hostile template (a chat
// template comes with the model file) cannot overflow the stack; real chat templates stay far
// below.
constexpr int kMaxNesting = 256;

// The template's root body. Throws TemplateError (jinja_error.h) naming the line and what was
// expected.
std::unique_ptr<Body> ParseTemplate(std::vector<Token> tokens);

}  // namespace internal

}  // namespace schism::jinja

#endif  // SCHISM_COMMON_TEMPLATE_JINJA_PARSER_H_
