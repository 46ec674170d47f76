#include "common/template/jinja_lexer.h"

#include <algorithm>
#include <cctype>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/template/jinja_error.h"

namespace schism::jinja::internal {

std::vector<Token> Lex(const std::string& src) {
  std::vector<Token> out;
  size_t pos = 0;
  int line = 1;
  bool strip_next = false;  // a '-' closed the previous tag
  bool trim_next = false;   // trim_blocks: drop one newline after a block tag
  auto count_lines = [&](size_t from, size_t to) {
    line += static_cast<int>(std::count(src.begin() + from, src.begin() + to, '\n'));
  };
  while (pos < src.size()) {
    size_t start = pos;
    while (true) {
      start = src.find('{', start);
      if (start == std::string::npos || start + 1 >= src.size()) {
        start = std::string::npos;
        break;
      }
      const char c = src[start + 1];
      if (c == '{' || c == '%' || c == '#') break;
      ++start;
    }
    std::string text =
        src.substr(pos, start == std::string::npos ? std::string::npos : start - pos);
    const int text_line = line;
    count_lines(pos, start == std::string::npos ? src.size() : start);
    if (strip_next) {
      size_t k = 0;
      while (k < text.size() && IsSpace(text[k])) ++k;
      text.erase(0, k);
    } else if (trim_next) {
      if (text.rfind("\r\n", 0) == 0) {
        text.erase(0, 2);
      } else if (!text.empty() && text[0] == '\n') {
        text.erase(0, 1);
      }
    }
    strip_next = trim_next = false;
    if (start == std::string::npos) {
      if (!text.empty()) out.push_back({Tok::kText, text, text_line});
      break;
    }
    const char kind = src[start + 1];
    size_t p = start + 2;
    const bool minus = p < src.size() && src[p] == '-';
    const bool plus = p < src.size() && src[p] == '+';
    if (minus || plus) ++p;
    if (minus) {
      while (!text.empty() && IsSpace(text.back())) text.pop_back();
    } else if (kind != '{' && !plus) {
      // lstrip_blocks: a block or comment tag that is the first thing on its line takes the
      // line's indentation with it.
      size_t b = start;
      while (b > 0 && (src[b - 1] == ' ' || src[b - 1] == '\t')) --b;
      if (b == 0 || src[b - 1] == '\n') {
        while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.pop_back();
      }
    }
    if (!text.empty()) out.push_back({Tok::kText, text, text_line});

    if (kind == '#') {
      size_t end = src.find("#}", p);
      if (end == std::string::npos) Fail(line, "unterminated comment");
      strip_next = end > p && src[end - 1] == '-';
      trim_next = !strip_next;
      count_lines(start, end + 2);
      pos = end + 2;
      continue;
    }
    out.push_back({kind == '{' ? Tok::kVarBegin : Tok::kBlockBegin, "", line});
    const char close = kind == '{' ? '}' : '%';
    int depth = 0;
    while (true) {
      while (p < src.size() && IsSpace(src[p])) {
        if (src[p] == '\n') ++line;
        ++p;
      }
      if (p >= src.size()) Fail(line, "unterminated tag");
      // The tag closes with [-]%} or [-]}} (outside any brace literal).
      if (depth == 0) {
        size_t q = p;
        const bool close_minus =
            src[q] == '-' && q + 2 < src.size() + 0 && src[q + 1] == close && src[q + 2] == '}';
        if (close_minus) ++q;
        if (q + 1 < src.size() && src[q] == close && src[q + 1] == '}') {
          out.push_back({kind == '{' ? Tok::kVarEnd : Tok::kBlockEnd, "", line});
          strip_next = close_minus;
          trim_next = !close_minus && kind == '%';
          pos = q + 2;
          break;
        }
      }
      const char c = src[p];
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t e = p;
        while (e < src.size() &&
               (std::isalnum(static_cast<unsigned char>(src[e])) || src[e] == '_'))
          ++e;
        out.push_back({Tok::kName, src.substr(p, e - p), line});
        p = e;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        size_t e = p;
        while (e < src.size() && std::isdigit(static_cast<unsigned char>(src[e]))) ++e;
        bool is_float = false;
        if (e + 1 < src.size() && src[e] == '.' &&
            std::isdigit(static_cast<unsigned char>(src[e + 1]))) {
          is_float = true;
          ++e;
          while (e < src.size() && std::isdigit(static_cast<unsigned char>(src[e]))) ++e;
        }
        out.push_back({is_float ? Tok::kFloat : Tok::kInt, src.substr(p, e - p), line});
        p = e;
      } else if (c == '\'' || c == '"') {
        std::string value;
        size_t e = p + 1;
        while (e < src.size() && src[e] != c) {
          if (src[e] == '\\' && e + 1 < src.size()) {
            const char n = src[++e];
            switch (n) {
              case 'n':
                value += '\n';
                break;
              case 't':
                value += '\t';
                break;
              case 'r':
                value += '\r';
                break;
              case '\\':
                value += '\\';
                break;
              case '\'':
                value += '\'';
                break;
              case '"':
                value += '"';
                break;
              default:
                value += '\\';
                value += n;
            }
          } else {
            if (src[e] == '\n') ++line;
            value += src[e];
          }
          ++e;
        }
        if (e >= src.size()) Fail(line, "unterminated string literal");
        out.push_back({Tok::kString, value, line});
        p = e + 1;
      } else {
        static const char* kOps[] = {"**", "//", "==", "!=", "<=", ">=", "+", "-", "*",
                                     "/",  "%",  "~",  "|",  ".",  ",",  ":", "(", ")",
                                     "[",  "]",  "{",  "}",  "=",  "<",  ">"};
        std::string op;
        for (const char* candidate : kOps) {
          if (src.compare(p, std::strlen(candidate), candidate) == 0) {
            op = candidate;
            break;
          }
        }
        if (op.empty()) Fail(line, absl::StrCat("unexpected character '", std::string(1, c), "'"));
        if (op == "{") ++depth;
        if (op == "}") --depth;
        out.push_back({Tok::kOp, op, line});
        p += op.size();
      }
    }
  }
  out.push_back({Tok::kEnd, "", line});
  return out;
}

}  // namespace schism::jinja::internal
