#include "common/template/jinja_evaluator.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <ctime>
#include <optional>

#include "common/template/jinja_lexer.h"

namespace schism::jinja::internal {
namespace {

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
  if (a.is_string() && b.is_string())
    return a.str().compare(b.str()) < 0 ? -1 : a.str() == b.str() ? 0 : 1;
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
  auto strip = [&](char c) {
    return chars.empty() ? IsSpace(c) || c == '\f' || c == '\v'
                         : chars.find(c) != std::string::npos;
  };
  size_t b = 0, e = s.size();
  if (left)
    while (b < e && strip(s[b])) ++b;
  if (right)
    while (e > b && strip(s[e - 1])) --e;
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
    if (found == std::string::npos ||
        (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit)) {
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
std::optional<Value> CallMethod(const Value& obj, const std::string& name, CallArgs& args,
                                int line) {
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
        const bool hit =
            name == "startswith"
                ? s.rfind(t, 0) == 0
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
      for (size_t at = s.find(sub); !sub.empty() && at != std::string::npos;
           at = s.find(sub, at + sub.size()))
        ++n;
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
    Fail(line, absl::StrCat("unsupported operand types for ", op, ": ", TypeName(a), " and ",
                            TypeName(b)));
  }
  auto as_int = [](const Value& v) { return v.is_bool() ? int64_t{v.Truthy()} : v.as_int(); };
  auto as_num = [](const Value& v) {
    return v.is_bool() ? (v.Truthy() ? 1.0 : 0.0) : v.as_number();
  };
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

void Unpack(Context& ctx, const std::vector<std::string>& targets, const Value& item, int line) {
  if (targets.size() == 1) {
    ctx.Assign(targets[0], item);
    return;
  }
  ValueList parts = Items(item, line);
  if (parts.size() != targets.size()) {
    Fail(line,
         absl::StrCat("cannot unpack ", parts.size(), " values into ", targets.size(), " names"));
  }
  for (size_t i = 0; i < targets.size(); ++i) ctx.Assign(targets[i], parts[i]);
}

// `value | name(args)` and `value is name(args)`; defined after the expressions.
Value ApplyFilter(const std::string& name, const Value& v, CallArgs& args, int line);
bool ApplyTest(const std::string& name, const Value& v, CallArgs& args, int line);

}  // namespace

// ---- expressions -----------------------------------------------------------------------------

Value Literal::Eval(Context&) const { return value; }

Value Name::Eval(Context& ctx) const { return ctx.Lookup(name); }

Value ListExpr::Eval(Context& ctx) const {
  ValueList out;
  for (const auto& e : items) out.push_back(e->Eval(ctx));
  return Value(std::move(out));
}

Value DictExpr::Eval(Context& ctx) const {
  ValueDict out;
  for (const auto& [k, v] : items) {
    Value key = k->Eval(ctx);
    if (!key.is_string()) Fail(line, "dict keys must be strings");
    out.Set(key.str(), v->Eval(ctx));
  }
  return Value(std::move(out));
}

Value AttrExpr::Eval(Context& ctx) const { return Attribute(object->Eval(ctx), name); }

Value IndexExpr::Eval(Context& ctx) const {
  Value obj = object->Eval(ctx);
  return Subscript(obj, key->Eval(ctx), line);
}

Value SliceExpr::Eval(Context& ctx) const {
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

Value CallExpr::Eval(Context& ctx) const {
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

Value FilterExpr::Eval(Context& ctx) const {
  Value v = input->Eval(ctx);
  CallArgs call;
  for (const auto& a : args) call.positional.push_back(a->Eval(ctx));
  for (const auto& [k, e] : kwargs) call.keyword.emplace_back(k, e->Eval(ctx));
  return ApplyFilter(name, v, call, line);
}

Value TestExpr::Eval(Context& ctx) const {
  Value v = input->Eval(ctx);
  CallArgs call;
  for (const auto& a : args) call.positional.push_back(a->Eval(ctx));
  return Value(ApplyTest(name, v, call, line) != negated);
}

Value UnaryExpr::Eval(Context& ctx) const {
  Value v = operand->Eval(ctx);
  if (op == "not") return Value(!v.Truthy());
  if (!v.is_number()) Fail(line, absl::StrCat("bad operand for unary ", op, ": ", TypeName(v)));
  if (op == "+") return v;
  return v.is_int() ? Value(-v.as_int()) : Value(-v.as_number());
}

Value BinaryExpr::Eval(Context& ctx) const {
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

Value TernaryExpr::Eval(Context& ctx) const {
  if (condition->Eval(ctx).Truthy()) return then_value->Eval(ctx);
  return else_value ? else_value->Eval(ctx) : Value();
}

// ---- filters and tests -----------------------------------------------------------------------

namespace {

Value ApplyFilter(const std::string& name, const Value& v, CallArgs& args, int line) {
  if (name == "trim") return Value(StripChars(v.ToString(), "", true, true));
  if (name == "length" || name == "count") return Value(Length(v, line));
  if (name == "upper") return Value(CaseMap(v.ToString(), ::toupper));
  if (name == "lower") return Value(CaseMap(v.ToString(), ::tolower));
  if (name == "capitalize") return Value(Title(CaseMap(v.ToString(), ::tolower), true));
  if (name == "title") return Value(Title(v.ToString(), false));
  if (name == "string") return Value(v.ToString());
  if (name == "safe" || name == "e" || name == "escape")
    return name == "safe" ? v : Value(v.ToString());
  if (name == "tojson") {
    Value indent = args.Get(0, "indent");
    return Value(v.ToJsonText(indent.is_int() ? static_cast<int>(indent.as_int()) : -1));
  }
  if (name == "default" || name == "d") {
    const bool boolean = args.Get(1, "boolean", Value(false)).Truthy();
    if (v.is_undefined() || (boolean && !v.Truthy()))
      return args.Get(0, "default_value", Value(""));
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
      if (std::none_of(out.begin(), out.end(), [&](const Value& o) { return o.Equals(item); }))
        out.push_back(item);
    }
    return Value(std::move(out));
  }
  if (name == "sort") {
    ValueList items = Items(v, line);
    const bool reverse = args.Get(0, "reverse", Value(false)).Truthy();
    const Value attribute = args.Get(2, "attribute");
    auto key = [&](const Value& x) {
      return attribute.is_string() ? Attribute(x, attribute.str()) : x;
    };
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
        rest.positional.assign(
            args.positional.begin() + std::min<size_t>(1, args.positional.size()),
            args.positional.end());
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
    for (size_t i = next; i < args.positional.size(); ++i)
      test_args.positional.push_back(args.positional[i]);
    ValueList out;
    for (const Value& item : Items(v, line)) {
      const Value subject = by_attr ? Attribute(item, attribute) : item;
      const bool passed =
          test.is_string() ? ApplyTest(test.str(), subject, test_args, line) : subject.Truthy();
      if (passed == keep_if) out.push_back(item);
    }
    return Value(std::move(out));
  }
  if (name == "wordcount")
    return Value(static_cast<int64_t>(Split(v.ToString(), Value(), -1).size()));
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

}  // namespace

// ---- statements ------------------------------------------------------------------------------

Flow Body::Render(Context& ctx) const {
  for (const auto& child : children) {
    const Flow flow = child->Render(ctx);
    if (flow != Flow::kNormal) return flow;
  }
  return Flow::kNormal;
}

Flow TextNode::Render(Context& ctx) const {
  ctx.Emit(text, line);
  return Flow::kNormal;
}

Flow OutputNode::Render(Context& ctx) const {
  ctx.Emit(expr->Eval(ctx).ToString(), line);
  return Flow::kNormal;
}

Flow IfNode::Render(Context& ctx) const {
  for (const auto& [cond, body] : branches) {
    if (cond->Eval(ctx).Truthy()) return body->Render(ctx);
  }
  return otherwise ? otherwise->Render(ctx) : Flow::kNormal;
}

Flow ForNode::Render(Context& ctx) const {
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

Flow SetNode::Render(Context& ctx) const {
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

Flow LoopControlNode::Render(Context&) const { return flow; }

Flow MacroNode::Render(Context& ctx) const {
  // The macro captures the defining context by pointer; templates render synchronously.
  Context* defining = &ctx;
  const MacroNode* self = this;
  ctx.Assign(name, Value(Function([defining, self](CallArgs& args) {
               Context& c = *defining;
               c.Step(self->line);
               NestingGuard nesting(c.depth, self->line,
                                    kMaxCallDepth);  // a macro that calls itself forever
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

// ---- globals and the entry point -------------------------------------------------------------

namespace {

// Functions every template can call.
void AddGlobals(std::unordered_map<std::string, Value>* globals) {
  (*globals)["raise_exception"] = Value(Function(
      [](CallArgs& args) -> Value { throw RaisedByTemplate(args.Get(0, "message").ToString()); }));
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
    if (count > kMaxRangeItems)
      throw TemplateError(absl::StrCat("range() of more than ", kMaxRangeItems, " items"));
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

void RenderTemplate(const Node& root, const ValueDict& variables, std::string* out) {
  Context ctx;
  ctx.out = out;
  ctx.scopes.emplace_back();
  AddGlobals(&ctx.scopes.back());
  ctx.scopes.emplace_back();
  for (const auto& [k, v] : variables.items) ctx.scopes.back()[k] = v;
  root.Render(ctx);
}

}  // namespace schism::jinja::internal
