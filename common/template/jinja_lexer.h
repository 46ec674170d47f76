// The Jinja lexer: splits template source into runs of literal text and the tokens inside {{ }} and
// {% %} tags. It applies whitespace control the way transformers configures jinja2: a `-` at a
// tag's edge strips the whitespace next to it, a `+` keeps it, trim_blocks drops the newline after
// a block or comment tag, and lstrip_blocks drops the indentation before one. Comments {# #}
// produce no tokens.
#ifndef SCHISM_COMMON_TEMPLATE_JINJA_LEXER_H_
#define SCHISM_COMMON_TEMPLATE_JINJA_LEXER_H_

#include <string>
#include <vector>

namespace schism::jinja::internal {

// kText: literal text between tags. kVarBegin/kVarEnd: `{{` and `}}`; kBlockBegin/kBlockEnd: `{%`
// and
// `%}`. Inside tags: kName, kString (escapes already resolved), kInt, kFloat, and kOp for operators
// and punctuation. kEnd ends the stream.
enum class Tok {
  kText,
  kVarBegin,
  kVarEnd,
  kBlockBegin,
  kBlockEnd,
  kName,
  kString,
  kInt,
  kFloat,
  kOp,
  kEnd
};

struct Token {
  Tok type;
  std::string text;
  int line;
};

// The whitespace that `-` strips: space, tab, newline, carriage return.
inline bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// The tokens of `src`, ending with one kEnd token. Throws TemplateError (jinja_error.h) on an
// unterminated tag, comment or string literal, and on a character that starts no token.
std::vector<Token> Lex(const std::string& src);

}  // namespace schism::jinja::internal

#endif  // SCHISM_COMMON_TEMPLATE_JINJA_LEXER_H_
