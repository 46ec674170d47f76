#include "common/template/jinja_template.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <optional>
#include <ctime>
#include <map>
#include <stdexcept>
#include <unordered_map>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace schism::jinja {

// ============================================================================================
// Errors. Exceptions stay inside this file; Parse and Render turn them into absl::Status.
// ============================================================================================
namespace {

struct TemplateError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// raise_exception("...") in a template: the template rejected its input.
struct RaisedByTemplate : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void Fail(int line, const std::string& message) {
  throw TemplateError(absl::StrCat("template line ", line, ": ", message));
}

// Budgets that keep a hostile template (a chat template comes with the model file) from
// overflowing the stack, hanging or exhausting memory; real chat templates stay far below.
constexpr int kMaxNesting = 256;                // parser nesting (blocks, expressions)
constexpr int kMaxCallDepth = 100;              // macro calls in progress
constexpr int64_t kMaxSteps = 1'000'000;        // loop iterations and macro calls per render
constexpr size_t kMaxOutputBytes = 16 << 20;    // rendered text, and any one string built
constexpr int64_t kMaxRangeItems = 1'000'000;

// Counts one level of nesting for as long as it lives.
struct NestingGuard {
  int& depth;
  NestingGuard(int& d, int line, int limit = kMaxNesting) : depth(d) {
    if (++depth > limit) {
      --depth;
      Fail(line, absl::StrCat("nested deeper than ", limit, " levels"));
    }
  }
  ~NestingGuard() { --depth; }
};

// ============================================================================================
// Lexer
// ============================================================================================
enum class Tok { kText, kVarBegin, kVarEnd, kBlockBegin, kBlockEnd, kName, kString, kInt, kFloat,
                 kOp, kEnd };

struct Token {
  Tok type;
  std::string text;
  int line;
};

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

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
    std::string text = src.substr(pos, start == std::string::npos ? std::string::npos : start - pos);
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
        const bool close_minus = src[q] == '-' && q + 2 < src.size() + 0 && src[q + 1] == close &&
                                 src[q + 2] == '}';
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
        while (e < src.size() && (std::isalnum(static_cast<unsigned char>(src[e])) || src[e] == '_')) ++e;
        out.push_back({Tok::kName, src.substr(p, e - p), line});
        p = e;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        size_t e = p;
        while (e < src.size() && std::isdigit(static_cast<unsigned char>(src[e]))) ++e;
        bool is_float = false;
        if (e + 1 < src.size() && src[e] == '.' && std::isdigit(static_cast<unsigned char>(src[e + 1]))) {
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
              case 'n': value += '\n'; break;
              case 't': value += '\t'; break;
              case 'r': value += '\r'; break;
              case '\\': value += '\\'; break;
              case '\'': value += '\''; break;
              case '"': value += '"'; break;
              default: value += '\\'; value += n;
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
        static const char* kOps[] = {"**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%",
                                     "~",  "|",  ".",  ",",  ":",  "(",  ")", "[", "]", "{", "}",
                                     "=",  "<",  ">"};
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

}  // namespace

// ============================================================================================
// AST and evaluation
// ============================================================================================
namespace {

struct Context;
enum class Flow { kNormal, kBreak, kContinue };

struct Expr {
  int line = 0;
  virtual ~Expr() = default;
  virtual Value Eval(Context& ctx) const = 0;
};
using ExprPtr = std::unique_ptr<Expr>;

}  // namespace

struct Node {
  int line = 0;
  virtual ~Node() = default;
  virtual Flow Render(Context& ctx) const = 0;
};

namespace {
using NodePtr = std::unique_ptr<Node>;

struct Context {
  std::vector<std::unordered_map<std::string, Value>> scopes;
  std::string* out;
  int depth = 0;       // macro calls in progress
  int64_t steps = 0;   // loop iterations and macro calls so far

  void Step(int line) {
    if (++steps > kMaxSteps) Fail(line, absl::StrCat("rendering took more than ", kMaxSteps, " steps"));
  }
  void Emit(const std::string& text, int line) {
    if (out->size() + text.size() > kMaxOutputBytes) Fail(line, absl::StrCat("output grew past ", kMaxOutputBytes, " bytes"));
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

struct ScopeGuard {
  Context& ctx;
  explicit ScopeGuard(Context& c) : ctx(c) { ctx.scopes.emplace_back(); }
  ~ScopeGuard() { ctx.scopes.pop_back(); }
};

// ---- value helpers ---------------------------------------------------------------------------

std::string TypeName(const Value& v) {
  if (v.is_undefined()) return "undefined";
  if (v.is_none()) return "none";
  if (v.is_bool()) return "bool";
  if (v.is_int()) return "int";
  if (v.is_float()) return "float";
  if (v.is_string()) return "string";
  if (v.is_list()) return "list";
  if (v.is_dict()) return "dict";
  return "function";
}

// Iterating a value: lists as is, dict keys, string characters (UTF-8 code points).
ValueList Items(const Value& v, int line) {
  if (v.is_list()) return v.list();
  if (v.is_dict()) {
    ValueList keys;
    for (const auto& [k, _] : v.dict().items) keys.emplace_back(k);
    return keys;
  }
  if (v.is_string()) {
    ValueList chars;
    const std::string& s = v.str();
    for (size_t i = 0; i < s.size();) {
      const unsigned char b = static_cast<unsigned char>(s[i]);
      const size_t len = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : 4;
      chars.emplace_back(s.substr(i, len));
      i += len;
    }
    return chars;
  }
  if (v.is_undefined() || v.is_none()) return {};
  Fail(line, absl::StrCat("cannot iterate over ", TypeName(v)));
}

int Compare(const Value& a, const Value& b, int line) {
  if (a.is_number() && b.is_number()) {
    return a.as_number() < b.as_number() ? -1 : a.as_number() > b.as_number() ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) return a.str().compare(b.str()) < 0 ? -1 : a.str() == b.str() ? 0 : 1;
  Fail(line, absl::StrCat("cannot compare ", TypeName(a), " with ", TypeName(b)));
}

bool Contains(const Value& container, const Value& item, int line) {
  if (container.is_string()) {
    if (!item.is_string()) Fail(line, "'in <string>' requires a string on the left");
    return container.str().find(item.str()) != std::string::npos;
  }
  if (container.is_list()) {
    for (const Value& v : container.list()) {
      if (v.Equals(item)) return true;
    }
    return false;
  }
  if (container.is_dict()) return item.is_string() && container.dict().Find(item.str()) != nullptr;
  if (container.is_undefined()) return false;
  Fail(line, absl::StrCat("'in' is not supported for ", TypeName(container)));
}

int64_t Length(const Value& v, int line) {
  if (v.is_string()) return static_cast<int64_t>(Items(v, line).size());
  if (v.is_list()) return static_cast<int64_t>(v.list().size());
  if (v.is_dict()) return static_cast<int64_t>(v.dict().items.size());
  if (v.is_undefined()) return 0;
  Fail(line, absl::StrCat("object of type ", TypeName(v), " has no length"));
}

std::string StripChars(const std::string& s, const std::string& chars, bool left, bool right) {
  auto strip = [&](char c) { return chars.empty() ? IsSpace(c) || c == '\f' || c == '\v' : chars.find(c) != std::string::npos; };
  size_t b = 0, e = s.size();
  if (left) while (b < e && strip(s[b])) ++b;
  if (right) while (e > b && strip(s[e - 1])) --e;
  return s.substr(b, e - b);
}

Value Attribute(const Value& obj, const std::string& name) {
  if (obj.is_dict()) {
    if (const Value* found = obj.dict().Find(name)) return *found;
  }
  return Value();
}

Value Subscript(const Value& obj, const Value& key, int line) {
  if (obj.is_dict()) {
    if (!key.is_string()) return Value();
    return Attribute(obj, key.str());
  }
  if (obj.is_list() || obj.is_string()) {
    if (!key.is_int()) Fail(line, "indices must be integers");
    ValueList items = obj.is_list() ? obj.list() : Items(obj, line);
    int64_t i = key.as_int();
    if (i < 0) i += static_cast<int64_t>(items.size());
    if (i < 0 || i >= static_cast<int64_t>(items.size())) return Value();
    return items[i];
  }
  return Value();
}

std::vector<std::string> Split(const std::string& s, const Value& sep, int64_t maxsplit) {
  std::vector<std::string> parts;
  if (sep.is_undefined() || sep.is_none()) {  // whitespace split, dropping empties
    size_t i = 0;
    while (i < s.size()) {
      while (i < s.size() && IsSpace(s[i])) ++i;
      if (i >= s.size()) break;
      if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) {
        parts.push_back(StripChars(s.substr(i), "", false, true));
        break;
      }
      size_t j = i;
      while (j < s.size() && !IsSpace(s[j])) ++j;
      parts.push_back(s.substr(i, j - i));
      i = j;
    }
    return parts;
  }
  const std::string& d = sep.str();
  size_t start = 0;
  while (true) {
    size_t found = d.empty() ? std::string::npos : s.find(d, start);
    if (found == std::string::npos || (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit)) {
      parts.push_back(s.substr(start));
      break;
    }
    parts.push_back(s.substr(start, found - start));
    start = found + d.size();
  }
  return parts;
}

std::string Replace(std::string s, const std::string& from, const std::string& to, int64_t count) {
  if (from.empty()) return s;
  size_t pos = 0;
  int64_t done = 0;
  while ((count < 0 || done < count) && (pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
    ++done;
  }
  return s;
}

std::string Title(const std::string& s, bool only_first) {
  std::string out = s;
  bool start = true;
  for (size_t i = 0; i < out.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(out[i]);
    if (std::isalpha(c)) {
      out[i] = static_cast<char>(start ? std::toupper(c) : std::tolower(c));
      start = false;
    } else {
      start = only_first ? false : true;
      if (only_first) continue;
    }
  }
  return out;
}

std::string CaseMap(std::string s, int (*f)(int)) {
  for (char& c : s) c = static_cast<char>(f(static_cast<unsigned char>(c)));
  return s;
}

// Methods on strings, lists and dicts (`x.strip()`, `d.items()`).
std::optional<Value> CallMethod(const Value& obj, const std::string& name, CallArgs& args, int line) {
  if (obj.is_string()) {
    const std::string& s = obj.str();
    auto arg_str = [&](size_t i, const char* kw) {
      Value v = args.Get(i, kw);
      return v.is_string() ? v.str() : std::string();
    };
    if (name == "strip") return Value(StripChars(s, arg_str(0, "chars"), true, true));
    if (name == "lstrip") return Value(StripChars(s, arg_str(0, "chars"), true, false));
    if (name == "rstrip") return Value(StripChars(s, arg_str(0, "chars"), false, true));
    if (name == "upper") return Value(CaseMap(s, ::toupper));
    if (name == "lower") return Value(CaseMap(s, ::tolower));
    if (name == "title") return Value(Title(s, false));
    if (name == "capitalize") return Value(Title(CaseMap(s, ::tolower), true));
    if (name == "startswith" || name == "endswith") {
      Value prefix = args.Get(0, "prefix");
      ValueList options = prefix.is_list() ? prefix.list() : ValueList{prefix};
      for (const Value& p : options) {
        if (!p.is_string()) Fail(line, absl::StrCat(name, "() expects a string"));
        const std::string& t = p.str();
        const bool hit = name == "startswith" ? s.rfind(t, 0) == 0
                                              : s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
        if (hit) return Value(true);
      }
      return Value(false);
    }
    if (name == "split" || name == "rsplit") {
      Value maxsplit = args.Get(1, "maxsplit", Value(int64_t{-1}));
      ValueList parts;
      for (auto& p : Split(s, args.Get(0, "sep"), maxsplit.as_int())) parts.emplace_back(p);
      return Value(std::move(parts));
    }
    if (name == "replace") {
      return Value(Replace(s, arg_str(0, "old"), arg_str(1, "new"),
                           args.Get(2, "count", Value(int64_t{-1})).as_int()));
    }
    if (name == "find") {
      size_t at = s.find(arg_str(0, "sub"));
      return Value(at == std::string::npos ? int64_t{-1} : static_cast<int64_t>(at));
    }
    if (name == "count") {
      const std::string sub = arg_str(0, "sub");
      int64_t n = 0;
      for (size_t at = s.find(sub); !sub.empty() && at != std::string::npos; at = s.find(sub, at + sub.size())) ++n;
      return Value(n);
    }
    if (name == "join") {
      std::string out;
      ValueList items = Items(args.Get(0, "iterable"), line);
      for (size_t i = 0; i < items.size(); ++i) out += (i ? s : "") + items[i].ToString();
      return Value(out);
    }
  }
  if (obj.is_dict()) {
    const ValueDict& d = obj.dict();
    if (name == "items") {
      ValueList out;
      for (const auto& [k, v] : d.items) out.emplace_back(ValueList{Value(k), v});
      return Value(std::move(out));
    }
    if (name == "keys") return Value(Items(obj, line));
    if (name == "values") {
      ValueList out;
      for (const auto& [k, v] : d.items) out.push_back(v);
      return Value(std::move(out));
    }
    if (name == "get") {
      Value key = args.Get(0, "key");
      const Value* found = key.is_string() ? d.Find(key.str()) : nullptr;
      return found ? *found : args.Get(1, "default", Value(None{}));
    }
  }
  return std::nullopt;
}

// ---- expressions -----------------------------------------------------------------------------

struct Literal : Expr {
  Value value;
  Value Eval(Context&) const override { return value; }
};

struct Name : Expr {
  std::string name;
  Value Eval(Context& ctx) const override { return ctx.Lookup(name); }
};

struct ListExpr : Expr {
  std::vector<ExprPtr> items;
  Value Eval(Context& ctx) const override {
    ValueList out;
    for (const auto& e : items) out.push_back(e->Eval(ctx));
    return Value(std::move(out));
  }
};

struct DictExpr : Expr {
  std::vector<std::pair<ExprPtr, ExprPtr>> items;
  Value Eval(Context& ctx) const override {
    ValueDict out;
    for (const auto& [k, v] : items) {
      Value key = k->Eval(ctx);
      if (!key.is_string()) Fail(line, "dict keys must be strings");
      out.Set(key.str(), v->Eval(ctx));
    }
    return Value(std::move(out));
  }
};

struct AttrExpr : Expr {
  ExprPtr object;
  std::string name;
  Value Eval(Context& ctx) const override { return Attribute(object->Eval(ctx), name); }
};

struct IndexExpr : Expr {
  ExprPtr object, key;
  Value Eval(Context& ctx) const override {
    Value obj = object->Eval(ctx);
    return Subscript(obj, key->Eval(ctx), line);
  }
};

struct SliceExpr : Expr {
  ExprPtr object, start, stop, step;
  Value Eval(Context& ctx) const override {
    Value obj = object->Eval(ctx);
    ValueList items = Items(obj, line);
    const int64_t n = static_cast<int64_t>(items.size());
    int64_t st = step ? step->Eval(ctx).as_int() : 1;
    if (st == 0) Fail(line, "slice step cannot be zero");
    auto bound = [&](const ExprPtr& e, int64_t fallback) {
      if (!e) return fallback;
      Value v = e->Eval(ctx);
      if (v.is_none()) return fallback;
      int64_t i = v.as_int();
      if (i < 0) i += n;
      if (st > 0) return std::clamp<int64_t>(i, 0, n);
      return std::clamp<int64_t>(i, -1, n - 1);
    };
    int64_t b = bound(start, st > 0 ? 0 : n - 1);
    int64_t e = bound(stop, st > 0 ? n : -1);
    ValueList out;
    for (int64_t i = b; st > 0 ? i < e : i > e; i += st) out.push_back(items[i]);
    if (obj.is_string()) {
      std::string s;
      for (const Value& c : out) s += c.str();
      return Value(s);
    }
    return Value(std::move(out));
  }
};

struct CallExpr : Expr {
  ExprPtr callee;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  Value Eval(Context& ctx) const override {
    CallArgs call;
    for (const auto& a : args) call.positional.push_back(a->Eval(ctx));
    for (const auto& [k, v] : kwargs) call.keyword.emplace_back(k, v->Eval(ctx));
    if (const auto* attr = dynamic_cast<const AttrExpr*>(callee.get())) {
      Value obj = attr->object->Eval(ctx);
      Value member = Attribute(obj, attr->name);
      if (!member.is_callable()) {
        if (auto result = CallMethod(obj, attr->name, call, line)) return *result;
        Fail(line, absl::StrCat(TypeName(obj), " has no method ", attr->name));
      }
      return member.function()(call);
    }
    Value f = callee->Eval(ctx);
    if (!f.is_callable()) Fail(line, "called a value that is not a function");
    return f.function()(call);
  }
};

Value ApplyFilter(const std::string& name, const Value& v, CallArgs& args, int line);
bool ApplyTest(const std::string& name, const Value& v, CallArgs& args, int line);

struct FilterExpr : Expr {
  ExprPtr input;
  std::string name;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  Value Eval(Context& ctx) const override {
    Value v = input->Eval(ctx);
    CallArgs call;
    for (const auto& a : args) call.positional.push_back(a->Eval(ctx));
    for (const auto& [k, e] : kwargs) call.keyword.emplace_back(k, e->Eval(ctx));
    return ApplyFilter(name, v, call, line);
  }
};

struct TestExpr : Expr {
  ExprPtr input;
  std::string name;
  bool negated = false;
  std::vector<ExprPtr> args;
  Value Eval(Context& ctx) const override {
    Value v = input->Eval(ctx);
    CallArgs call;
    for (const auto& a : args) call.positional.push_back(a->Eval(ctx));
    return Value(ApplyTest(name, v, call, line) != negated);
  }
};

struct UnaryExpr : Expr {
  std::string op;
  ExprPtr operand;
  Value Eval(Context& ctx) const override {
    Value v = operand->Eval(ctx);
    if (op == "not") return Value(!v.Truthy());
    if (!v.is_number()) Fail(line, absl::StrCat("bad operand for unary ", op, ": ", TypeName(v)));
    if (op == "+") return v;
    return v.is_int() ? Value(-v.as_int()) : Value(-v.as_number());
  }
};

Value Arithmetic(const std::string& op, const Value& a, const Value& b, int line) {
  if (op == "+" && a.is_string() && b.is_string()) return Value(a.str() + b.str());
  if (op == "+" && a.is_list() && b.is_list()) {
    ValueList out = a.list();
    out.insert(out.end(), b.list().begin(), b.list().end());
    return Value(std::move(out));
  }
  if (op == "*" && a.is_string() && b.is_int()) {
    if (b.as_int() > 0 && a.str().size() * static_cast<uint64_t>(b.as_int()) > kMaxOutputBytes) {
      Fail(line, absl::StrCat("string repeated past ", kMaxOutputBytes, " bytes"));
    }
    std::string out;
    for (int64_t i = 0; i < b.as_int(); ++i) out += a.str();
    return Value(out);
  }
  auto numeric = [](const Value& v) { return v.is_number() || v.is_bool(); };
  if (!numeric(a) || !numeric(b)) {
    Fail(line, absl::StrCat("unsupported operand types for ", op, ": ", TypeName(a), " and ", TypeName(b)));
  }
  auto as_int = [](const Value& v) { return v.is_bool() ? int64_t{v.Truthy()} : v.as_int(); };
  auto as_num = [](const Value& v) { return v.is_bool() ? (v.Truthy() ? 1.0 : 0.0) : v.as_number(); };
  const bool ints = !a.is_float() && !b.is_float();
  if (op == "/") {
    if (as_num(b) == 0) Fail(line, "division by zero");
    return Value(as_num(a) / as_num(b));
  }
  if (ints) {
    const int64_t x = as_int(a), y = as_int(b);
    if (op == "+") return Value(x + y);
    if (op == "-") return Value(x - y);
    if (op == "*") return Value(x * y);
    if (op == "**") return Value(static_cast<int64_t>(std::pow(x, y)));
    if (y == 0) Fail(line, "integer division or modulo by zero");
    const int64_t q = x / y - ((x % y != 0) && ((x < 0) != (y < 0)));
    if (op == "//") return Value(q);
    if (op == "%") return Value(x - q * y);
  }
  const double x = as_num(a), y = as_num(b);
  if (op == "+") return Value(x + y);
  if (op == "-") return Value(x - y);
  if (op == "*") return Value(x * y);
  if (op == "**") return Value(std::pow(x, y));
  if (y == 0) Fail(line, "float division by zero");
  if (op == "//") return Value(std::floor(x / y));
  return Value(x - std::floor(x / y) * y);
}

struct BinaryExpr : Expr {
  std::string op;
  ExprPtr left, right;
  Value Eval(Context& ctx) const override {
    if (op == "and") {
      Value l = left->Eval(ctx);
      return l.Truthy() ? right->Eval(ctx) : l;
    }
    if (op == "or") {
      Value l = left->Eval(ctx);
      return l.Truthy() ? l : right->Eval(ctx);
    }
    Value l = left->Eval(ctx), r = right->Eval(ctx);
    if (op == "~") return Value(l.ToString() + r.ToString());
    if (op == "==") return Value(l.Equals(r));
    if (op == "!=") return Value(!l.Equals(r));
    if (op == "<") return Value(Compare(l, r, line) < 0);
    if (op == ">") return Value(Compare(l, r, line) > 0);
    if (op == "<=") return Value(Compare(l, r, line) <= 0);
    if (op == ">=") return Value(Compare(l, r, line) >= 0);
    if (op == "in") return Value(Contains(r, l, line));
    if (op == "not in") return Value(!Contains(r, l, line));
    return Arithmetic(op, l, r, line);
  }
};

struct TernaryExpr : Expr {
  ExprPtr condition, then_value, else_value;
  Value Eval(Context& ctx) const override {
    if (condition->Eval(ctx).Truthy()) return then_value->Eval(ctx);
    return else_value ? else_value->Eval(ctx) : Value();
  }
};

// ---- filters and tests -----------------------------------------------------------------------

Value ApplyFilter(const std::string& name, const Value& v, CallArgs& args, int line) {
  if (name == "trim") return Value(StripChars(v.ToString(), "", true, true));
  if (name == "length" || name == "count") return Value(Length(v, line));
  if (name == "upper") return Value(CaseMap(v.ToString(), ::toupper));
  if (name == "lower") return Value(CaseMap(v.ToString(), ::tolower));
  if (name == "capitalize") return Value(Title(CaseMap(v.ToString(), ::tolower), true));
  if (name == "title") return Value(Title(v.ToString(), false));
  if (name == "string") return Value(v.ToString());
  if (name == "safe" || name == "e" || name == "escape") return name == "safe" ? v : Value(v.ToString());
  if (name == "tojson") {
    Value indent = args.Get(0, "indent");
    return Value(v.ToJsonText(indent.is_int() ? static_cast<int>(indent.as_int()) : -1));
  }
  if (name == "default" || name == "d") {
    const bool boolean = args.Get(1, "boolean", Value(false)).Truthy();
    if (v.is_undefined() || (boolean && !v.Truthy())) return args.Get(0, "default_value", Value(""));
    return v;
  }
  if (name == "join") {
    const Value sep = args.Get(0, "d", Value(""));
    const Value attribute = args.Get(1, "attribute");
    std::string out;
    ValueList items = Items(v, line);
    for (size_t i = 0; i < items.size(); ++i) {
      const Value item = attribute.is_string() ? Attribute(items[i], attribute.str()) : items[i];
      out += (i ? sep.ToString() : "") + item.ToString();
    }
    return Value(out);
  }
  if (name == "first" || name == "last") {
    ValueList items = Items(v, line);
    if (items.empty()) return Value();
    return name == "first" ? items.front() : items.back();
  }
  if (name == "list") return Value(Items(v, line));
  if (name == "reverse") {
    ValueList items = Items(v, line);
    std::reverse(items.begin(), items.end());
    if (v.is_string()) {
      std::string s;
      for (const Value& c : items) s += c.str();
      return Value(s);
    }
    return Value(std::move(items));
  }
  if (name == "int") {
    if (v.is_number()) return Value(static_cast<int64_t>(v.as_number()));
    if (v.is_string()) {
      try {
        return Value(static_cast<int64_t>(std::stoll(v.str())));
      } catch (...) {
      }
    }
    return args.Get(0, "default", Value(int64_t{0}));
  }
  if (name == "float") {
    if (v.is_number()) return Value(v.as_number());
    if (v.is_string()) {
      try {
        return Value(std::stod(v.str()));
      } catch (...) {
      }
    }
    return args.Get(0, "default", Value(0.0));
  }
  if (name == "abs") {
    if (!v.is_number()) Fail(line, "abs of a non-number");
    return v.is_int() ? Value(std::abs(v.as_int())) : Value(std::fabs(v.as_number()));
  }
  if (name == "round") {
    const int64_t precision = args.Get(0, "precision", Value(int64_t{0})).as_int();
    const double scale = std::pow(10.0, static_cast<double>(precision));
    return Value(std::nearbyint(v.as_number() * scale) / scale);
  }
  if (name == "replace") {
    return Value(Replace(v.ToString(), args.Get(0, "old").ToString(), args.Get(1, "new").ToString(),
                         args.Get(2, "count", Value(int64_t{-1})).as_int()));
  }
  if (name == "items") {
    CallArgs none;
    if (auto r = CallMethod(v, "items", none, line)) return *r;
    Fail(line, "items filter expects a mapping");
  }
  if (name == "indent") {
    const int64_t width = args.Get(0, "width", Value(int64_t{4})).as_int();
    const bool first = args.Get(1, "first", Value(false)).Truthy();
    const std::string pad(static_cast<size_t>(width), ' ');
    std::string s = v.ToString(), out;
    for (size_t i = 0; i < s.size(); ++i) {
      out += s[i];
      if (s[i] == '\n' && i + 1 < s.size() && s[i + 1] != '\n') out += pad;
    }
    return Value(first ? pad + out : out);
  }
  if (name == "unique") {
    ValueList out;
    for (const Value& item : Items(v, line)) {
      if (std::none_of(out.begin(), out.end(), [&](const Value& o) { return o.Equals(item); })) out.push_back(item);
    }
    return Value(std::move(out));
  }
  if (name == "sort") {
    ValueList items = Items(v, line);
    const bool reverse = args.Get(0, "reverse", Value(false)).Truthy();
    const Value attribute = args.Get(2, "attribute");
    auto key = [&](const Value& x) { return attribute.is_string() ? Attribute(x, attribute.str()) : x; };
    std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
      return reverse ? Compare(key(b), key(a), line) < 0 : Compare(key(a), key(b), line) < 0;
    });
    return Value(std::move(items));
  }
  if (name == "map") {
    ValueList out;
    const Value attribute = args.Get(99, "attribute");
    for (const Value& item : Items(v, line)) {
      if (attribute.is_string()) {
        out.push_back(Attribute(item, attribute.str()));
      } else {
        CallArgs rest;
        rest.positional.assign(args.positional.begin() + std::min<size_t>(1, args.positional.size()), args.positional.end());
        out.push_back(ApplyFilter(args.Get(0, "").ToString(), item, rest, line));
      }
    }
    return Value(std::move(out));
  }
  if (name == "selectattr" || name == "rejectattr" || name == "select" || name == "reject") {
    const bool by_attr = name == "selectattr" || name == "rejectattr";
    const bool keep_if = name == "selectattr" || name == "select";
    size_t next = 0;
    std::string attribute;
    if (by_attr) attribute = args.Get(next++, "").ToString();
    const Value test = args.Get(next++, "");
    CallArgs test_args;
    for (size_t i = next; i < args.positional.size(); ++i) test_args.positional.push_back(args.positional[i]);
    ValueList out;
    for (const Value& item : Items(v, line)) {
      const Value subject = by_attr ? Attribute(item, attribute) : item;
      const bool passed = test.is_string() ? ApplyTest(test.str(), subject, test_args, line) : subject.Truthy();
      if (passed == keep_if) out.push_back(item);
    }
    return Value(std::move(out));
  }
  if (name == "wordcount") return Value(static_cast<int64_t>(Split(v.ToString(), Value(), -1).size()));
  Fail(line, absl::StrCat("unknown filter '", name, "'"));
}

bool ApplyTest(const std::string& name, const Value& v, CallArgs& args, int line) {
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "number") return v.is_number();
  if (name == "integer") return v.is_int();
  if (name == "float") return v.is_float();
  if (name == "boolean") return v.is_bool();
  if (name == "true") return v.is_bool() && v.Truthy();
  if (name == "false") return v.is_bool() && !v.Truthy();
  if (name == "mapping") return v.is_dict();
  if (name == "sequence") return v.is_list() || v.is_string() || v.is_dict();
  if (name == "iterable") return v.is_list() || v.is_string() || v.is_dict();
  if (name == "callable") return v.is_callable();
  if (name == "odd") return v.is_int() && v.as_int() % 2 != 0;
  if (name == "even") return v.is_int() && v.as_int() % 2 == 0;
  if (name == "divisibleby") return v.is_int() && v.as_int() % args.Get(0, "num").as_int() == 0;
  if (name == "equalto" || name == "eq" || name == "sameas") return v.Equals(args.Get(0, "other"));
  if (name == "ne") return !v.Equals(args.Get(0, "other"));
  if (name == "in") return Contains(args.Get(0, "seq"), v, line);
  if (name == "lower") return v.is_string() && CaseMap(v.str(), ::tolower) == v.str();
  if (name == "upper") return v.is_string() && CaseMap(v.str(), ::toupper) == v.str();
  Fail(line, absl::StrCat("unknown test '", name, "'"));
}

// ---- statements ------------------------------------------------------------------------------

struct Body : Node {
  std::vector<NodePtr> children;
  Flow Render(Context& ctx) const override {
    for (const auto& child : children) {
      const Flow flow = child->Render(ctx);
      if (flow != Flow::kNormal) return flow;
    }
    return Flow::kNormal;
  }
};

struct TextNode : Node {
  std::string text;
  Flow Render(Context& ctx) const override {
    ctx.Emit(text, line);
    return Flow::kNormal;
  }
};

struct OutputNode : Node {
  ExprPtr expr;
  Flow Render(Context& ctx) const override {
    ctx.Emit(expr->Eval(ctx).ToString(), line);
    return Flow::kNormal;
  }
};

struct IfNode : Node {
  std::vector<std::pair<ExprPtr, std::unique_ptr<Body>>> branches;
  std::unique_ptr<Body> otherwise;
  Flow Render(Context& ctx) const override {
    for (const auto& [cond, body] : branches) {
      if (cond->Eval(ctx).Truthy()) return body->Render(ctx);
    }
    return otherwise ? otherwise->Render(ctx) : Flow::kNormal;
  }
};

void Unpack(Context& ctx, const std::vector<std::string>& targets, const Value& item, int line) {
  if (targets.size() == 1) {
    ctx.Assign(targets[0], item);
    return;
  }
  ValueList parts = Items(item, line);
  if (parts.size() != targets.size()) {
    Fail(line, absl::StrCat("cannot unpack ", parts.size(), " values into ", targets.size(), " names"));
  }
  for (size_t i = 0; i < targets.size(); ++i) ctx.Assign(targets[i], parts[i]);
}

struct ForNode : Node {
  std::vector<std::string> targets;
  ExprPtr iterable, filter;
  std::unique_ptr<Body> body, otherwise;
  Flow Render(Context& ctx) const override {
    ValueList all = Items(iterable->Eval(ctx), line);
    ValueList items;
    if (filter) {
      for (const Value& item : all) {
        ScopeGuard scope(ctx);
        Unpack(ctx, targets, item, line);
        if (filter->Eval(ctx).Truthy()) items.push_back(item);
      }
    } else {
      items = std::move(all);
    }
    if (items.empty()) return otherwise ? otherwise->Render(ctx) : Flow::kNormal;
    const int64_t n = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < n; ++i) {
      ctx.Step(line);
      ScopeGuard scope(ctx);
      ValueDict loop;
      loop.Set("index", Value(i + 1));
      loop.Set("index0", Value(i));
      loop.Set("revindex", Value(n - i));
      loop.Set("revindex0", Value(n - i - 1));
      loop.Set("first", Value(i == 0));
      loop.Set("last", Value(i == n - 1));
      loop.Set("length", Value(n));
      loop.Set("previtem", i > 0 ? items[i - 1] : Value());
      loop.Set("nextitem", i + 1 < n ? items[i + 1] : Value());
      loop.Set("cycle", Value(Function([i](CallArgs& a) {
        return a.positional.empty() ? Value() : a.positional[i % a.positional.size()];
      })));
      ctx.Assign("loop", Value(std::move(loop)));
      Unpack(ctx, targets, items[i], line);
      if (body->Render(ctx) == Flow::kBreak) break;
    }
    return Flow::kNormal;
  }
};

struct SetNode : Node {
  std::vector<std::string> targets;  // names, or {namespace, attribute} when is_attribute
  bool is_attribute = false;
  ExprPtr value;
  std::unique_ptr<Body> block;  // {% set x %}...{% endset %}
  Flow Render(Context& ctx) const override {
    Value v;
    if (block) {
      std::string captured;
      std::string* saved = ctx.out;
      ctx.out = &captured;
      block->Render(ctx);
      ctx.out = saved;
      v = Value(captured);
    } else {
      v = value->Eval(ctx);
    }
    if (is_attribute) {
      Value ns = ctx.Lookup(targets[0]);
      if (!ns.is_dict() || !ns.dict().is_namespace) {
        Fail(line, absl::StrCat("cannot assign attribute on '", targets[0], "' (not a namespace)"));
      }
      ns.dict().Set(targets[1], v);
    } else {
      Unpack(ctx, targets, v, line);
    }
    return Flow::kNormal;
  }
};

struct LoopControlNode : Node {
  Flow flow;
  Flow Render(Context&) const override { return flow; }
};

struct MacroNode : Node {
  std::string name;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // aligned with params; null when required
  std::shared_ptr<Body> body;
  Flow Render(Context& ctx) const override {
    // The macro captures the defining context by pointer; templates render synchronously.
    Context* defining = &ctx;
    const MacroNode* self = this;
    ctx.Assign(name, Value(Function([defining, self](CallArgs& args) {
      Context& c = *defining;
      c.Step(self->line);
      NestingGuard nesting(c.depth, self->line, kMaxCallDepth);  // a macro that calls itself forever
      ScopeGuard scope(c);
      for (size_t i = 0; i < self->params.size(); ++i) {
        Value v = args.Get(i, self->params[i]);
        if (v.is_undefined() && self->defaults[i]) v = self->defaults[i]->Eval(c);
        c.Assign(self->params[i], v);
      }
      std::string captured;
      std::string* saved = c.out;
      c.out = &captured;
      self->body->Render(c);
      c.out = saved;
      return Value(captured);
    })));
    return Flow::kNormal;
  }
};

// ============================================================================================
// Parser: recursive descent over the token stream, following jinja2's precedence
// (ternary < or < and < not < comparisons/in/is < + - < ~ < * / // % < ** < unary < postfix).
// ============================================================================================
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
  bool IsOp(const char* op, size_t k = 0) const { return Peek(k).type == Tok::kOp && Peek(k).text == op; }
  bool IsName(const char* name, size_t k = 0) const { return Peek(k).type == Tok::kName && Peek(k).text == name; }
  void ExpectOp(const char* op) {
    if (!IsOp(op)) Fail(Peek().line, absl::StrCat("expected '", op, "', found '", Peek().text, "'"));
    ++pos_;
  }
  std::string ExpectName() {
    if (Peek().type != Tok::kName) Fail(Peek().line, absl::StrCat("expected a name, found '", Peek().text, "'"));
    return Next().text;
  }
  void ExpectBlockEnd() {
    if (Peek().type != Tok::kBlockEnd) Fail(Peek().line, absl::StrCat("expected '%}', found '", Peek().text, "'"));
    ++pos_;
  }

  // Parses nodes until a block tag whose keyword is in `enders`; returns that keyword in *end
  // (the tag's remaining tokens are left for the caller).
  std::unique_ptr<Body> ParseBody(const std::vector<std::string>& enders, std::string* end) {
    NestingGuard nesting(depth_, Peek().line);
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
        if (Peek().type != Tok::kVarEnd) Fail(Peek().line, absl::StrCat("expected '}}', found '", Peek().text, "'"));
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
    NestingGuard nesting(depth_, Peek().line);
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
    NestingGuard nesting(depth_, Peek().line);
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
    NestingGuard nesting(depth_, Peek().line);
    if (IsOp("-") || IsOp("+")) {
      auto node = Make<UnaryExpr>(Peek().line);
      node->op = Next().text;
      node->operand = ParseUnary();
      return node;
    }
    return ParseFilters(ParsePostfix(ParsePrimary()));
  }

  void ParseCallArgs(std::vector<ExprPtr>* args, std::vector<std::pair<std::string, ExprPtr>>* kwargs) {
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
    Fail(t.line, absl::StrCat("unexpected '", t.text.empty() ? "end of tag" : t.text, "' in expression"));
  }

  std::vector<Token> toks_;
  size_t pos_ = 0;
};

// Functions every template can call.
void AddGlobals(std::unordered_map<std::string, Value>* globals) {
  (*globals)["raise_exception"] = Value(Function([](CallArgs& args) -> Value {
    throw RaisedByTemplate(args.Get(0, "message").ToString());
  }));
  (*globals)["namespace"] = Value(Function([](CallArgs& args) {
    ValueDict ns;
    ns.is_namespace = true;
    for (auto& [k, v] : args.keyword) ns.Set(k, v);
    return Value(std::move(ns));
  }));
  (*globals)["dict"] = Value(Function([](CallArgs& args) {
    ValueDict d;
    for (auto& [k, v] : args.keyword) d.Set(k, v);
    return Value(std::move(d));
  }));
  (*globals)["range"] = Value(Function([](CallArgs& args) {
    int64_t start = 0, stop = 0, step = 1;
    if (args.positional.size() == 1) {
      stop = args.positional[0].as_int();
    } else if (args.positional.size() >= 2) {
      start = args.positional[0].as_int();
      stop = args.positional[1].as_int();
      if (args.positional.size() > 2) step = args.positional[2].as_int();
    }
    ValueList out;
    if (step == 0) return Value(std::move(out));
    const long double count = (static_cast<long double>(stop) - start) / step;
    if (count > kMaxRangeItems) throw TemplateError(absl::StrCat("range() of more than ", kMaxRangeItems, " items"));
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out.emplace_back(i);
    return Value(std::move(out));
  }));
  (*globals)["strftime_now"] = Value(Function([](CallArgs& args) {
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);
    char buf[256];
    const size_t n = std::strftime(buf, sizeof(buf), args.Get(0, "format").ToString().c_str(), &tm);
    return Value(std::string(buf, n));
  }));
}

}  // namespace

Template::Template() = default;
Template::~Template() = default;

absl::StatusOr<std::unique_ptr<Template>> Template::Parse(const std::string& source) {
  try {
    Parser parser(Lex(source));
    std::unique_ptr<Template> t(new Template());
    t->root_ = parser.ParseTemplate();
    return t;
  } catch (const TemplateError& e) {
    return absl::InvalidArgumentError(e.what());
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("template: ", e.what()));
  }
}

absl::StatusOr<std::string> Template::Render(const Value& context) const {
  if (!context.is_dict()) return absl::InvalidArgumentError("template context must be a dict");
  std::string out;
  Context ctx;
  ctx.out = &out;
  ctx.scopes.emplace_back();
  AddGlobals(&ctx.scopes.back());
  ctx.scopes.emplace_back();
  for (const auto& [k, v] : context.dict().items) ctx.scopes.back()[k] = v;
  try {
    root_->Render(ctx);
  } catch (const RaisedByTemplate& e) {
    return absl::InvalidArgumentError(absl::StrCat("chat template raised: ", e.what()));
  } catch (const TemplateError& e) {
    return absl::InvalidArgumentError(e.what());
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("template: ", e.what()));
  }
  return out;
}

}  // namespace schism::jinja
