#include "common/template/jinja_value.h"

#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "common/python_float.h"

namespace schism::jinja {

const Value* ValueDict::Find(const std::string& key) const {
  for (const auto& [k, v] : items) {
    if (k == key) return &v;
  }
  return nullptr;
}

void ValueDict::Set(const std::string& key, Value value) {
  for (auto& [k, v] : items) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  items.emplace_back(key, std::move(value));
}

bool Value::Truthy() const {
  if (is_undefined() || is_none()) return false;
  if (is_bool()) return std::get<bool>(v);
  if (is_int()) return as_int() != 0;
  if (is_float()) return std::get<double>(v) != 0.0;
  if (is_string()) return !str().empty();
  if (is_list()) return !list().empty();
  if (is_dict()) return !dict().items.empty();
  return true;
}

namespace {

std::string StringRepr(const std::string& s) {
  const char quote =
      (s.find('\'') != std::string::npos && s.find('"') == std::string::npos) ? '"' : '\'';
  std::string out(1, quote);
  for (char c : s) {
    if (c == quote || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else {
      out += c;
    }
  }
  return out + quote;
}

}  // namespace

std::string Value::ToString() const {
  if (is_undefined()) return "";
  if (is_string()) return str();
  return Repr();
}

std::string Value::Repr() const {
  if (is_undefined()) return "";
  if (is_none()) return "None";
  if (is_bool()) return std::get<bool>(v) ? "True" : "False";
  if (is_int()) return std::to_string(as_int());
  if (is_float()) return common::PythonFloatRepr(std::get<double>(v));
  if (is_string()) return StringRepr(str());
  if (is_list()) {
    std::string out = "[";
    for (size_t i = 0; i < list().size(); ++i) out += (i ? ", " : "") + list()[i].Repr();
    return out + "]";
  }
  if (is_dict()) {
    std::string out = dict().is_namespace ? "<Namespace {" : "{";
    for (size_t i = 0; i < dict().items.size(); ++i) {
      out += (i ? ", " : "") + StringRepr(dict().items[i].first) + ": " +
             dict().items[i].second.Repr();
    }
    return out + (dict().is_namespace ? "}>" : "}");
  }
  return "<function>";
}

bool Value::Equals(const Value& other) const {
  if (is_number() && other.is_number()) {
    if (is_int() && other.is_int()) return as_int() == other.as_int();
    return as_number() == other.as_number();
  }
  if (is_bool() && other.is_bool()) return std::get<bool>(v) == std::get<bool>(other.v);
  if (is_bool() && other.is_number()) return (std::get<bool>(v) ? 1.0 : 0.0) == other.as_number();
  if (is_number() && other.is_bool()) return other.Equals(*this);
  if (v.index() != other.v.index()) return false;
  if (is_undefined() || is_none()) return true;
  if (is_string()) return str() == other.str();
  if (is_list()) {
    if (list().size() != other.list().size()) return false;
    for (size_t i = 0; i < list().size(); ++i) {
      if (!list()[i].Equals(other.list()[i])) return false;
    }
    return true;
  }
  if (is_dict()) {
    if (dict().items.size() != other.dict().items.size()) return false;
    for (const auto& [k, val] : dict().items) {
      const Value* o = other.dict().Find(k);
      if (o == nullptr || !val.Equals(*o)) return false;
    }
    return true;
  }
  return &function() == &other.function();
}

Value Value::FromJson(const nlohmann::ordered_json& j) {
  using Type = nlohmann::ordered_json::value_t;
  switch (j.type()) {
    case Type::null:
      return Value(None{});
    case Type::boolean:
      return Value(j.get<bool>());
    case Type::number_integer:
    case Type::number_unsigned:
      return Value(j.get<int64_t>());
    case Type::number_float:
      return Value(j.get<double>());
    case Type::string:
      return Value(j.get<std::string>());
    case Type::array: {
      ValueList list;
      for (const auto& item : j) list.push_back(FromJson(item));
      return Value(std::move(list));
    }
    case Type::object: {
      ValueDict dict;
      for (auto it = j.begin(); it != j.end(); ++it) dict.Set(it.key(), FromJson(it.value()));
      return Value(std::move(dict));
    }
    default:
      return Value();
  }
}

namespace {

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

void AppendJson(const Value& v, int indent, int depth, std::string* out) {
  auto newline = [&](int d) {
    if (indent < 0) return;
    *out += '\n';
    out->append(static_cast<size_t>(indent * d), ' ');
  };
  const char* item_sep = indent < 0 ? ", " : ",";
  if (v.is_list()) {
    if (v.list().empty()) {
      *out += "[]";
      return;
    }
    *out += '[';
    for (size_t i = 0; i < v.list().size(); ++i) {
      if (i) *out += item_sep;
      newline(depth + 1);
      AppendJson(v.list()[i], indent, depth + 1, out);
    }
    newline(depth);
    *out += ']';
  } else if (v.is_dict()) {
    if (v.dict().items.empty()) {
      *out += "{}";
      return;
    }
    *out += '{';
    for (size_t i = 0; i < v.dict().items.size(); ++i) {
      if (i) *out += item_sep;
      newline(depth + 1);
      *out += JsonString(v.dict().items[i].first) + ": ";
      AppendJson(v.dict().items[i].second, indent, depth + 1, out);
    }
    newline(depth);
    *out += '}';
  } else if (v.is_string()) {
    *out += JsonString(v.str());
  } else if (v.is_bool()) {
    *out += v.Truthy() ? "true" : "false";
  } else if (v.is_number()) {
    const std::string repr = v.Repr();
    *out += repr == "nan"    ? "NaN"
            : repr == "inf"  ? "Infinity"
            : repr == "-inf" ? "-Infinity"
                             : repr;
  } else {
    *out += "null";
  }
}

}  // namespace

std::string Value::ToJsonText(int indent) const {
  std::string out;
  AppendJson(*this, indent, 0, &out);
  return out;
}

Value CallArgs::Get(size_t i, const std::string& name, Value fallback) const {
  if (i < positional.size()) return positional[i];
  for (const auto& [k, v] : keyword) {
    if (k == name) return v;
  }
  return fallback;
}

}  // namespace schism::jinja
