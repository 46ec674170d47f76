// Values of the Jinja subset that chat templates use, with Python's semantics for truthiness,
// equality, and str()/repr(), since templates are written against Python's jinja2.
#ifndef SCHISM_COMMON_TEMPLATE_JINJA_VALUE_H_
#define SCHISM_COMMON_TEMPLATE_JINJA_VALUE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace schism::jinja {

struct Value;
using ValueList = std::vector<Value>;

// Insertion-ordered string-keyed mapping (Python dicts keep insertion order; tojson shows it).
struct ValueDict {
  std::vector<std::pair<std::string, Value>> items;
  bool is_namespace = false;  // `namespace(...)`: the one mutable object templates may assign to
  const Value* Find(const std::string& key) const;
  void Set(const std::string& key, Value value);
};

struct CallArgs;
using Function = std::function<Value(CallArgs&)>;

struct Undefined {};
struct None {};

struct Value {
  std::variant<Undefined, None, bool, int64_t, double, std::string, std::shared_ptr<ValueList>,
               std::shared_ptr<ValueDict>, std::shared_ptr<Function>>
      v;

  Value() = default;
  Value(None n) : v(n) {}
  Value(bool b) : v(b) {}
  Value(int i) : v(static_cast<int64_t>(i)) {}
  Value(int64_t i) : v(i) {}
  Value(size_t i) : v(static_cast<int64_t>(i)) {}
  Value(double d) : v(d) {}
  Value(const char* s) : v(std::string(s)) {}
  Value(std::string s) : v(std::move(s)) {}
  Value(ValueList l) : v(std::make_shared<ValueList>(std::move(l))) {}
  Value(ValueDict d) : v(std::make_shared<ValueDict>(std::move(d))) {}
  Value(Function f) : v(std::make_shared<Function>(std::move(f))) {}

  bool is_undefined() const { return std::holds_alternative<Undefined>(v); }
  bool is_none() const { return std::holds_alternative<None>(v); }
  bool is_bool() const { return std::holds_alternative<bool>(v); }
  bool is_int() const { return std::holds_alternative<int64_t>(v); }
  bool is_float() const { return std::holds_alternative<double>(v); }
  bool is_number() const { return is_int() || is_float(); }
  bool is_string() const { return std::holds_alternative<std::string>(v); }
  bool is_list() const { return std::holds_alternative<std::shared_ptr<ValueList>>(v); }
  bool is_dict() const { return std::holds_alternative<std::shared_ptr<ValueDict>>(v); }
  bool is_callable() const { return std::holds_alternative<std::shared_ptr<Function>>(v); }

  const std::string& str() const { return std::get<std::string>(v); }
  int64_t as_int() const { return std::get<int64_t>(v); }
  double as_number() const {
    return is_int() ? static_cast<double>(as_int()) : std::get<double>(v);
  }
  ValueList& list() const { return *std::get<std::shared_ptr<ValueList>>(v); }
  ValueDict& dict() const { return *std::get<std::shared_ptr<ValueDict>>(v); }
  Function& function() const { return *std::get<std::shared_ptr<Function>>(v); }

  bool Truthy() const;
  // Python str(): what `{{ value }}` prints (undefined prints nothing).
  std::string ToString() const;
  // Python repr(): how values print inside lists and dicts.
  std::string Repr() const;
  bool Equals(const Value& other) const;

  // Objects keep the order of the JSON text.
  static Value FromJson(const nlohmann::ordered_json& json);
  // Python's json.dumps(value, ensure_ascii=False, indent=indent) (indent < 0: one line).
  std::string ToJsonText(int indent = -1) const;
};

// Positional and keyword arguments of a call.
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
  // The i-th positional argument, else the keyword `name`, else `fallback`.
  Value Get(size_t i, const std::string& name, Value fallback = Value()) const;
};

}  // namespace schism::jinja

#endif  // SCHISM_COMMON_TEMPLATE_JINJA_VALUE_H_
