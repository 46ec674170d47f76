#include "cli/args.h"

#include <algorithm>
#include <charconv>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace schism::cli {
namespace {

constexpr size_t kWidth = 100;      // columns of the usage line and the help
constexpr size_t kHelpColumn = 30;  // where flag help starts at the most

// Every command takes it; Args::Parse and HelpText add it to each table.
const Flag& HelpFlag() {
  static const Flag kFlag{"help", "", "print this help and exit"};
  return kFlag;
}

const Flag* FindFlag(const Command& command, const std::string& name) {
  if (name == HelpFlag().name) return &HelpFlag();
  for (const Flag& flag : command.flags) {
    if (flag.name == name) return &flag;
  }
  return nullptr;
}

bool IsOptionalOperand(const std::string& operand) {
  return !operand.empty() && operand.front() == '[';
}

std::string FlagWithValue(const Flag& flag) {
  return flag.value_hint.empty() ? "--" + flag.name
                                 : absl::StrCat("--", flag.name, " ", flag.value_hint);
}

// Appends `words` to `out`, each after a space, starting a new line of `indent` spaces for a word
// that would end past kWidth; `column` is the length of out's last line so far.
void AppendWrapped(const std::vector<std::string>& words, size_t indent, size_t column,
                   std::string* out) {
  for (const std::string& word : words) {
    if (column > indent && column + 1 + word.size() > kWidth) {
      absl::StrAppend(out, "\n", std::string(indent, ' '), word);
      column = indent + word.size();
    } else {
      absl::StrAppend(out, " ", word);
      column += 1 + word.size();
    }
  }
}

}  // namespace

std::vector<Flag> JoinFlags(std::initializer_list<std::vector<Flag>> groups) {
  std::vector<Flag> flags;
  for (const std::vector<Flag>& group : groups)
    flags.insert(flags.end(), group.begin(), group.end());
  return flags;
}

std::string UsageLine(const Command& command) {
  std::string line = "usage: schism " + command.name;
  std::vector<std::string> words = command.operands;
  for (const Flag& flag : command.flags) {
    if (flag.required) words.push_back(FlagWithValue(flag));
  }
  for (const Flag& flag : command.flags) {
    if (!flag.required) words.push_back("[" + FlagWithValue(flag) + "]");
  }
  AppendWrapped(words, line.size() + 1, line.size(), &line);
  return line;
}

std::string Synopsis(const Command& command) {
  std::vector<std::string> words = {"schism", command.name};
  words.insert(words.end(), command.operands.begin(), command.operands.end());
  bool optional = false;
  for (const Flag& flag : command.flags) {
    if (flag.required) words.push_back(FlagWithValue(flag));
    optional = optional || !flag.required;
  }
  if (optional) words.push_back("[flags]");
  return absl::StrJoin(words, " ");
}

std::string HelpText(const Command& command) {
  std::vector<const Flag*> flags;
  for (const Flag& flag : command.flags) flags.push_back(&flag);
  flags.push_back(&HelpFlag());
  size_t column = 0;  // where the help starts: after the longest flag that leaves room for it
  for (const Flag* flag : flags) {
    const size_t width = 2 + FlagWithValue(*flag).size() + 2;
    if (width <= kHelpColumn) column = std::max(column, width);
  }
  std::string text = absl::StrCat(UsageLine(command), "\n\n", command.summary, "\n\nflags:\n");
  for (const Flag* flag : flags) {
    std::string line = "  " + FlagWithValue(*flag);
    if (line.size() + 2 > column) {  // a longer flag gets its help on the next line
      absl::StrAppend(&line, "\n", std::string(column - 1, ' '));
    } else {
      line.append(column - 1 - line.size(), ' ');
    }
    std::vector<std::string> words = absl::StrSplit(flag->help, ' ', absl::SkipEmpty());
    if (flag->required) words.push_back("(required)");
    AppendWrapped(words, column, column - 1, &line);
    absl::StrAppend(&text, line, "\n");
  }
  if (!command.notes.empty()) absl::StrAppend(&text, "\n", command.notes);
  return text;
}

absl::StatusOr<Args> Args::Parse(const std::vector<std::string>& argv, const Command& command) {
  Args args(&command);
  args.argv_ = argv;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (arg.size() < 3 || arg.rfind("--", 0) != 0) {
      args.positionals_.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::optional<std::string> inline_value;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      inline_value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    const Flag* flag = FindFlag(command, name);
    if (flag == nullptr) return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    if (flag->value_hint.empty()) {
      if (inline_value) {
        return absl::InvalidArgumentError(absl::StrCat("flag --", name, " takes no value"));
      }
      args.values_[name] = "true";
    } else if (inline_value) {
      args.values_[name] = *inline_value;
    } else if (i + 1 < argv.size()) {
      args.values_[name] = argv[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat("flag --", name, " expects a value"));
    }
  }
  if (args.Has(HelpFlag().name)) return args;  // the help is wanted, not a complete command line
  for (const Flag& flag : command.flags) {
    if (flag.required && !args.Has(flag.name)) {
      return absl::InvalidArgumentError(absl::StrCat("flag --", flag.name, " is required"));
    }
  }
  const size_t needed =
      std::count_if(command.operands.begin(), command.operands.end(),
                    [](const std::string& operand) { return !IsOptionalOperand(operand); });
  if (args.positionals_.size() > command.operands.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected argument \"", args.positionals_[command.operands.size()], "\""));
  }
  if (args.positionals_.size() < needed) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected ", absl::StrJoin(command.operands, " ")));
  }
  return args;
}

std::optional<std::string> Args::Get(const std::string& flag) const {
  auto it = values_.find(flag);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<std::optional<long>> Args::GetInt(const std::string& flag) const {
  auto text = Get(flag);
  if (!text) return std::optional<long>();
  long value = 0;
  auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (text->empty() || ec != std::errc() || end != text->data() + text->size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("flag --", flag, ": expected an integer, got \"", *text, "\""));
  }
  return std::optional<long>(value);
}

}  // namespace schism::cli
