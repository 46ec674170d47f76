#include "common/template/jinja_parser.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/template/jinja_error.h"

namespace schism::jinja::internal {
namespace {

// Recursive descent over the token stream, following jinja2's precedence
// (ternary < or < and < not < comparisons/in/is < + - < ~ < * / // % < ** < unary < postfix).
class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : toks_(std::move(tokens)) {}
  int depth_ = 0;  // nesting of bodies and expressions being parsed

  std::unique_ptr<Body> ParseTemplate() {
    std::string end;
    auto body = ParseBody({}, &end);
    if (!end.empty()) Fail(Peek().line, absl::StrCat("unexpected '", end, "'"));
    return body;
  }

 private:
  const Token& Peek(size_t k = 0) const { return toks_[std::min(pos_ + k, toks_.size() - 1)]; }
  Token Next() { return toks_[std::min(pos_++, toks_.size() - 1)]; }
  bool IsOp(const char* op, size_t k = 0) const {
    return Peek(k).type == Tok::kOp && Peek(k).text == op;
  }
  bool IsName(const char* name, size_t k = 0) const {
    return Peek(k).type == Tok::kName && Peek(k).text == name;
  }
  void ExpectOp(const char* op) {
    if (!IsOp(op))
      Fail(Peek().line, absl::StrCat("expected '", op, "', found '", Peek().text, "'"));
    ++pos_;
  }
  std::string ExpectName() {
    if (Peek().type != Tok::kName)
      Fail(Peek().line, absl::StrCat("expected a name, found '", Peek().text, "'"));
    return Next().text;
  }
  void ExpectBlockEnd() {
    if (Peek().type != Tok::kBlockEnd)
      Fail(Peek().line, absl::StrCat("expected '%}', found '", Peek().text, "'"));
    ++pos_;
  }

  // Parses nodes until a block tag whose keyword is in `enders`; returns that keyword in *end
  // (the tag's remaining tokens are left for the caller).
  std::unique_ptr<Body> ParseBody(const std::vector<std::string>& enders, std::string* end) {
    NestingGuard nesting(depth_, Peek().line, kMaxNesting);
    auto body = std::make_unique<Body>();
    end->clear();
    while (Peek().type != Tok::kEnd) {
      const Token& t = Peek();
      if (t.type == Tok::kText) {
        auto node = std::make_unique<TextNode>();
        node->text = Next().text;
        body->children.push_back(std::move(node));
      } else if (t.type == Tok::kVarBegin) {
        ++pos_;
        auto node = std::make_unique<OutputNode>();
        node->line = t.line;
        node->expr = ParseExpression();
        if (Peek().type != Tok::kVarEnd)
          Fail(Peek().line, absl::StrCat("expected '}}', found '", Peek().text, "'"));
        ++pos_;
        body->children.push_back(std::move(node));
      } else if (t.type == Tok::kBlockBegin) {
        const std::string keyword = Peek(1).text;
        if (std::find(enders.begin(), enders.end(), keyword) != enders.end()) {
          pos_ += 2;
          *end = keyword;
          return body;
        }
        ++pos_;
        body->children.push_back(ParseStatement());
      } else {
        Fail(t.line, absl::StrCat("unexpected '", t.text, "'"));
      }
    }
    if (!enders.empty()) Fail(Peek().line, absl::StrCat("missing '{% ", enders.back(), " %}'"));
    return body;
  }

  NodePtr ParseStatement() {
    const int line = Peek().line;
    const std::string keyword = ExpectName();
    std::string end;
    if (keyword == "if") {
      auto node = std::make_unique<IfNode>();
      node->line = line;
      ExprPtr cond = ParseExpression();
      ExpectBlockEnd();
      while (true) {
        auto body = ParseBody({"elif", "else", "endif"}, &end);
        node->branches.emplace_back(std::move(cond), std::move(body));
        if (end == "elif") {
          cond = ParseExpression();
          ExpectBlockEnd();
          continue;
        }
        if (end == "else") {
          ExpectBlockEnd();
          node->otherwise = ParseBody({"endif"}, &end);
        }
        ExpectBlockEnd();
        return node;
      }
    }
    if (keyword == "for") {
      auto node = std::make_unique<ForNode>();
      node->line = line;
      node->targets.push_back(ExpectName());
      while (IsOp(",")) {
        ++pos_;
        node->targets.push_back(ExpectName());
      }
      if (!IsName("in")) Fail(Peek().line, "expected 'in' in for loop");
      ++pos_;
      node->iterable = ParseTernaryFree();
      if (IsName("if")) {
        ++pos_;
        node->filter = ParseExpression();
      }
      ExpectBlockEnd();
      node->body = ParseBody({"else", "endfor"}, &end);
      if (end == "else") {
        ExpectBlockEnd();
        node->otherwise = ParseBody({"endfor"}, &end);
      }
      ExpectBlockEnd();
      return node;
    }
    if (keyword == "set") {
      auto node = std::make_unique<SetNode>();
      node->line = line;
      node->targets.push_back(ExpectName());
      if (IsOp(".")) {
        ++pos_;
        node->is_attribute = true;
        node->targets.push_back(ExpectName());
      } else {
        while (IsOp(",")) {
          ++pos_;
          node->targets.push_back(ExpectName());
        }
      }
      if (Peek().type == Tok::kBlockEnd) {
        ++pos_;
        node->block = ParseBody({"endset"}, &end);
        ExpectBlockEnd();
        return node;
      }
      ExpectOp("=");
      node->value = ParseExpression();
      ExpectBlockEnd();
      return node;
    }
    if (keyword == "macro") {
      auto node = std::make_unique<MacroNode>();
      node->line = line;
      node->name = ExpectName();
      ExpectOp("(");
      while (!IsOp(")")) {
        node->params.push_back(ExpectName());
        if (IsOp("=")) {
          ++pos_;
          node->defaults.push_back(ParseExpression());
        } else {
          node->defaults.push_back(nullptr);
        }
        if (!IsOp(")")) ExpectOp(",");
      }
      ++pos_;
      ExpectBlockEnd();
      node->body = ParseBody({"endmacro"}, &end);
      ExpectBlockEnd();
      return node;
    }
    if (keyword == "break" || keyword == "continue") {
      auto node = std::make_unique<LoopControlNode>();
      node->flow = keyword == "break" ? Flow::kBreak : Flow::kContinue;
      ExpectBlockEnd();
      return node;
    }
    if (keyword == "generation" || keyword == "endgeneration") {  // HF's assistant-mask markers
      ExpectBlockEnd();
      return std::make_unique<Body>();
    }
    Fail(line, absl::StrCat("unknown statement '", keyword, "'"));
  }

  template <typename T>
  std::unique_ptr<T> Make(int line) {
    auto node = std::make_unique<T>();
    node->line = line;
    return node;
  }

  ExprPtr ParseExpression() {
    NestingGuard nesting(depth_, Peek().line, kMaxNesting);
    ExprPtr value = ParseOr();
    while (IsName("if")) {
      auto node = Make<TernaryExpr>(Peek().line);
      ++pos_;
      node->condition = ParseOr();
      if (IsName("else")) {
        ++pos_;
        node->else_value = ParseOr();
      }
      node->then_value = std::move(value);
      value = std::move(node);
    }
    return value;
  }

  // A for loop's iterable: an expression without a trailing `if` (that starts the loop filter).
  ExprPtr ParseTernaryFree() { return ParseOr(); }

  ExprPtr ParseOr() {
    ExprPtr left = ParseAnd();
    while (IsName("or")) {
      auto node = Make<BinaryExpr>(Next().line);
      node->op = "or";
      node->left = std::move(left);
      node->right = ParseAnd();
      left = std::move(node);
    }
    return left;
  }

  ExprPtr ParseAnd() {
    ExprPtr left = ParseNot();
    while (IsName("and")) {
      auto node = Make<BinaryExpr>(Next().line);
      node->op = "and";
      node->left = std::move(left);
      node->right = ParseNot();
      left = std::move(node);
    }
    return left;
  }

  ExprPtr ParseNot() {
    NestingGuard nesting(depth_, Peek().line, kMaxNesting);
    if (IsName("not")) {
      auto node = Make<UnaryExpr>(Next().line);
      node->op = "not";
      node->operand = ParseNot();
      return node;
    }
    return ParseCompare();
  }

  ExprPtr ParseCompare() {
    ExprPtr left = ParseAdd();
    while (true) {
      std::string op;
      if (Peek().type == Tok::kOp &&
          (Peek().text == "==" || Peek().text == "!=" || Peek().text == "<" || Peek().text == ">" ||
           Peek().text == "<=" || Peek().text == ">=")) {
        op = Peek().text;
        ++pos_;
      } else if (IsName("in")) {
        op = "in";
        ++pos_;
      } else if (IsName("not") && IsName("in", 1)) {
        op = "not in";
        pos_ += 2;
      } else {
        return left;
      }
      auto node = Make<BinaryExpr>(Peek().line);
      node->op = op;
      node->left = std::move(left);
      node->right = ParseAdd();
      left = std::move(node);
    }
  }

  ExprPtr ParseBinaryLevel(const std::vector<std::string>& ops, ExprPtr (Parser::*next)()) {
    ExprPtr left = (this->*next)();
    while (Peek().type == Tok::kOp && std::find(ops.begin(), ops.end(), Peek().text) != ops.end()) {
      auto node = Make<BinaryExpr>(Peek().line);
      node->op = Next().text;
      node->left = std::move(left);
      node->right = (this->*next)();
      left = std::move(node);
    }
    return left;
  }
  ExprPtr ParseAdd() { return ParseBinaryLevel({"+", "-"}, &Parser::ParseConcat); }
  ExprPtr ParseConcat() { return ParseBinaryLevel({"~"}, &Parser::ParseMul); }
  ExprPtr ParseMul() { return ParseBinaryLevel({"*", "/", "//", "%"}, &Parser::ParsePow); }
  ExprPtr ParsePow() { return ParseBinaryLevel({"**"}, &Parser::ParseUnary); }

  ExprPtr ParseUnary() {
    NestingGuard nesting(depth_, Peek().line, kMaxNesting);
    if (IsOp("-") || IsOp("+")) {
      auto node = Make<UnaryExpr>(Peek().line);
      node->op = Next().text;
      node->operand = ParseUnary();
      return node;
    }
    return ParseFilters(ParsePostfix(ParsePrimary()));
  }

  void ParseCallArgs(std::vector<ExprPtr>* args,
                     std::vector<std::pair<std::string, ExprPtr>>* kwargs) {
    ExpectOp("(");
    while (!IsOp(")")) {
      if (Peek().type == Tok::kName && IsOp("=", 1)) {
        std::string key = Next().text;
        ++pos_;
        kwargs->emplace_back(key, ParseExpression());
      } else {
        args->push_back(ParseExpression());
      }
      if (!IsOp(")")) ExpectOp(",");
    }
    ++pos_;
  }

  ExprPtr ParsePostfix(ExprPtr value) {
    while (true) {
      const int line = Peek().line;
      if (IsOp(".")) {
        ++pos_;
        auto node = Make<AttrExpr>(line);
        node->object = std::move(value);
        if (Peek().type == Tok::kInt) {  // foo.0 means foo[0]
          auto index = Make<IndexExpr>(line);
          auto lit = Make<Literal>(line);
          lit->value = Value(static_cast<int64_t>(std::stoll(Next().text)));
          index->object = std::move(node->object);
          index->key = std::move(lit);
          value = std::move(index);
          continue;
        }
        node->name = ExpectName();
        value = std::move(node);
      } else if (IsOp("[")) {
        ++pos_;
        ExprPtr parts[3];
        int colons = 0;
        while (!IsOp("]")) {
          if (IsOp(":")) {
            ++pos_;
            if (++colons > 2) Fail(line, "too many ':' in slice");
            continue;
          }
          parts[colons] = ParseExpression();
        }
        ++pos_;
        if (colons == 0) {
          auto node = Make<IndexExpr>(line);
          node->object = std::move(value);
          node->key = std::move(parts[0]);
          if (!node->key) Fail(line, "empty subscript");
          value = std::move(node);
        } else {
          auto node = Make<SliceExpr>(line);
          node->object = std::move(value);
          node->start = std::move(parts[0]);
          node->stop = std::move(parts[1]);
          node->step = std::move(parts[2]);
          value = std::move(node);
        }
      } else if (IsOp("(")) {
        auto node = Make<CallExpr>(line);
        node->callee = std::move(value);
        ParseCallArgs(&node->args, &node->kwargs);
        value = std::move(node);
      } else {
        return value;
      }
    }
  }

  ExprPtr ParseFilters(ExprPtr value) {
    while (true) {
      const int line = Peek().line;
      if (IsOp("|")) {
        ++pos_;
        auto node = Make<FilterExpr>(line);
        node->input = std::move(value);
        node->name = ExpectName();
        if (IsOp("(")) ParseCallArgs(&node->args, &node->kwargs);
        value = ParsePostfix(std::move(node));
      } else if (IsName("is")) {
        ++pos_;
        auto node = Make<TestExpr>(line);
        node->input = std::move(value);
        if (IsName("not")) {
          ++pos_;
          node->negated = true;
        }
        if (IsName("none") || IsName("true") || IsName("false")) {
          node->name = Next().text;
        } else {
          node->name = ExpectName();
        }
        if (IsOp("(")) {
          std::vector<std::pair<std::string, ExprPtr>> unused;
          ParseCallArgs(&node->args, &unused);
        } else if (Peek().type == Tok::kString || Peek().type == Tok::kInt ||
                   Peek().type == Tok::kFloat) {
          node->args.push_back(ParsePrimary());  // `is divisibleby 3`, `is equalto 'x'`
        }
        value = std::move(node);
      } else {
        return value;
      }
    }
  }

  ExprPtr ParsePrimary() {
    const Token t = Next();
    if (t.type == Tok::kString) {
      auto lit = Make<Literal>(t.line);
      std::string s = t.text;
      while (Peek().type == Tok::kString) s += Next().text;  // adjacent literals concatenate
      lit->value = Value(s);
      return lit;
    }
    if (t.type == Tok::kInt || t.type == Tok::kFloat) {
      auto lit = Make<Literal>(t.line);
      lit->value = t.type == Tok::kInt ? Value(static_cast<int64_t>(std::stoll(t.text)))
                                       : Value(std::stod(t.text));
      return lit;
    }
    if (t.type == Tok::kName) {
      if (t.text == "true" || t.text == "True" || t.text == "false" || t.text == "False") {
        auto lit = Make<Literal>(t.line);
        lit->value = Value(t.text == "true" || t.text == "True");
        return lit;
      }
      if (t.text == "none" || t.text == "None") {
        auto lit = Make<Literal>(t.line);
        lit->value = Value(None{});
        return lit;
      }
      auto name = Make<Name>(t.line);
      name->name = t.text;
      return name;
    }
    if (t.type == Tok::kOp && t.text == "(") {
      ExprPtr inner = ParseExpression();
      if (IsOp(",")) {  // tuple: treated as a list
        auto list = Make<ListExpr>(t.line);
        list->items.push_back(std::move(inner));
        while (IsOp(",")) {
          ++pos_;
          if (IsOp(")")) break;
          list->items.push_back(ParseExpression());
        }
        ExpectOp(")");
        return list;
      }
      ExpectOp(")");
      return inner;
    }
    if (t.type == Tok::kOp && t.text == "[") {
      auto list = Make<ListExpr>(t.line);
      while (!IsOp("]")) {
        list->items.push_back(ParseExpression());
        if (!IsOp("]")) ExpectOp(",");
      }
      ++pos_;
      return list;
    }
    if (t.type == Tok::kOp && t.text == "{") {
      auto dict = Make<DictExpr>(t.line);
      while (!IsOp("}")) {
        ExprPtr key = ParseExpression();
        ExpectOp(":");
        dict->items.emplace_back(std::move(key), ParseExpression());
        if (!IsOp("}")) ExpectOp(",");
      }
      ++pos_;
      return dict;
    }
    Fail(t.line,
         absl::StrCat("unexpected '", t.text.empty() ? "end of tag" : t.text, "' in expression"));
  }

  std::vector<Token> toks_;
  size_t pos_ = 0;
};

}  // namespace

std::unique_ptr<Body> ParseTemplate(std::vector<Token> tokens) {
  Parser parser(std::move(tokens));
  return parser.ParseTemplate();
}

}  // namespace schism::jinja::internal
