#include "coordinator/tpe/replay.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/python_float.h"

namespace schism::tpe {
namespace {

std::string JsonQuote(const std::string& s) { return nlohmann::json(s).dump(); }

absl::StatusOr<Distribution> ParseParam(const nlohmann::json& p, const std::string& name) {
  const std::string type = p.value("type", "");
  auto need = [&](const char* key) -> absl::Status {
    if (!p.contains(key) || !p[key].is_number()) {
      return absl::InvalidArgumentError(
          absl::StrCat("param ", name, ": \"", key, "\" must be a number"));
    }
    return absl::OkStatus();
  };
  absl::StatusOr<Distribution> d = absl::InvalidArgumentError(absl::StrCat(
      "param ", name, ": \"type\" must be float, int or categorical, got \"", type, "\""));
  if (type == "float") {
    if (auto s = need("low"); !s.ok()) return s;
    if (auto s = need("high"); !s.ok()) return s;
    std::optional<double> step;
    if (p.contains("step") && p["step"].is_number()) step = p["step"].get<double>();
    d = Distribution::Float(p["low"].get<double>(), p["high"].get<double>(), p.value("log", false),
                            step);
  } else if (type == "int") {
    if (auto s = need("low"); !s.ok()) return s;
    if (auto s = need("high"); !s.ok()) return s;
    int64_t step = 1;
    if (p.contains("step") && p["step"].is_number_integer()) step = p["step"].get<int64_t>();
    d = Distribution::Int(p["low"].get<int64_t>(), p["high"].get<int64_t>(), p.value("log", false),
                          step);
  } else if (type == "categorical") {
    if (!p.contains("choices") || !p["choices"].is_array()) {
      return absl::InvalidArgumentError(
          absl::StrCat("param ", name, ": \"choices\" must be a list"));
    }
    std::vector<std::string> choices;
    for (const auto& c : p["choices"])
      choices.push_back(c.is_string() ? c.get<std::string>() : c.dump());
    d = Distribution::Categorical(std::move(choices));
  }
  if (!d.ok())
    return absl::InvalidArgumentError(absl::StrCat("param ", name, ": ", d.status().message()));
  return d;
}

}  // namespace

absl::StatusOr<ReplaySpace> ParseReplaySpace(const std::string& json_text) {
  auto j = nlohmann::json::parse(json_text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return absl::InvalidArgumentError("space: not a JSON object");
  ReplaySpace space;
  if (!j.contains("params") || !j["params"].is_array() || j["params"].empty()) {
    return absl::InvalidArgumentError("space: \"params\" must be a non-empty list");
  }
  for (const auto& p : j["params"]) {
    if (!p.is_object() || !p.contains("name") || !p["name"].is_string()) {
      return absl::InvalidArgumentError("space: every param needs a string \"name\"");
    }
    const std::string name = p["name"].get<std::string>();
    auto d = ParseParam(p, name);
    if (!d.ok()) return d.status();
    space.suggest_order.emplace_back(name, *d);
  }
  TpeOptions& o = space.options;
  o.directions.clear();
  for (const auto& d : j.value("directions", nlohmann::json::array({"minimize"}))) {
    const std::string dir = d.is_string() ? d.get<std::string>() : "";
    if (dir != "minimize" && dir != "maximize") {
      return absl::InvalidArgumentError(
          absl::StrCat("space: direction \"", dir, "\" is not minimize or maximize"));
    }
    o.directions.push_back(dir == "minimize" ? Direction::kMinimize : Direction::kMaximize);
  }
  o.n_startup_trials = j.value("n_startup_trials", 10);
  o.n_ei_candidates = j.value("n_ei_candidates", 24);
  o.seed = j.value("seed", 0u);
  o.constant_liar = j.value("constant_liar", false);
  if (o.n_ei_candidates <= 0)
    return absl::InvalidArgumentError("space: n_ei_candidates must be positive");
  return space;
}

std::string FormatParams(const SearchSpace& space, const std::map<std::string, double>& params) {
  std::vector<std::pair<std::string, Distribution>> sorted(space.begin(), space.end());
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::string out = "{";
  for (size_t i = 0; i < sorted.size(); ++i) {
    const auto& [name, d] = sorted[i];
    const ExternalValue v = ToExternal(d, params.at(name));
    out += (i ? ", " : "") + JsonQuote(name) + ": ";
    if (const auto* s = std::get_if<std::string>(&v)) {
      out += JsonQuote(*s);
    } else if (const auto* n = std::get_if<int64_t>(&v)) {
      out += std::to_string(*n);
    } else {
      out += common::PythonFloatRepr(std::get<double>(v));
    }
  }
  return out + "}";
}

absl::StatusOr<std::vector<std::string>> ReplayTold(const ReplaySpace& space,
                                                    const std::string& told) {
  TpeSampler sampler(space.options);
  std::vector<TrialRecord> trials;
  std::vector<std::string> out;
  std::istringstream in(told);
  std::string line;
  int line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto event = nlohmann::json::parse(line, nullptr, false);
    auto fail = [&](const std::string& why) {
      return absl::InvalidArgumentError(absl::StrCat("told line ", line_number, ": ", why));
    };
    if (event.is_discarded() || !event.is_object()) return fail("not a JSON object");
    if (event.contains("ask")) {
      if (!event["ask"].is_number_integer() ||
          event["ask"].get<int64_t>() != static_cast<int64_t>(trials.size())) {
        return fail(absl::StrCat("asks must number trials 0, 1, 2, ...; expected ", trials.size()));
      }
      TrialRecord t;
      t.number = static_cast<int64_t>(trials.size());
      t.params = sampler.SampleTrial(trials, t.number, space.suggest_order);
      for (const auto& [name, d] : space.suggest_order) t.distributions.emplace(name, d);
      out.push_back(absl::StrCat("T", t.number, " ", FormatParams(space.suggest_order, t.params)));
      trials.push_back(std::move(t));
    } else if (event.contains("tell")) {
      if (!event["tell"].is_number_integer()) return fail("\"tell\" must be a trial number");
      const int64_t n = event["tell"].get<int64_t>();
      if (n < 0 || n >= static_cast<int64_t>(trials.size()))
        return fail(absl::StrCat("trial ", n, " was never asked"));
      TrialRecord& t = trials[n];
      if (t.state != TrialState::kRunning)
        return fail(absl::StrCat("trial ", n, " was already told"));
      const std::string state = event.value("state", "COMPLETE");
      if (state == "COMPLETE") {
        if (!event.contains("values") || !event["values"].is_array() ||
            event["values"].size() != space.options.directions.size()) {
          return fail(absl::StrCat("COMPLETE needs \"values\" with ",
                                   space.options.directions.size(), " numbers"));
        }
        t.values.clear();
        for (const auto& v : event["values"]) {
          if (!v.is_number()) return fail("values must be numbers");
          t.values.push_back(v.get<double>());
        }
        // As Optuna's tell: a NaN objective makes the trial FAIL.
        const bool has_nan =
            std::any_of(t.values.begin(), t.values.end(), [](double v) { return std::isnan(v); });
        t.state = has_nan ? TrialState::kFail : TrialState::kComplete;
      } else if (state == "PRUNED") {
        t.state = TrialState::kPruned;
      } else if (state == "FAIL") {
        t.state = TrialState::kFail;
      } else {
        return fail(absl::StrCat("state \"", state, "\" is not COMPLETE, PRUNED or FAIL"));
      }
    } else {
      return fail("expected an \"ask\" or a \"tell\" event");
    }
  }
  return out;
}

}  // namespace schism::tpe
