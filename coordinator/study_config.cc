#include "coordinator/study_config.h"

#include <toml++/toml.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/byte_size.h"
#include "common/heretic_defaults.h"

namespace schism::coordinator {
namespace {

absl::Status KeyError(const std::string& where, const std::string& key, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", key, ": ", why));
}

// What one config file sets, while it is read; Finish() turns it into the spec.
struct Reader {
  std::string where;
  v1::StudySpec spec;
  std::optional<int64_t> batch_size, max_batch_size;
  bool plot_residuals = false;
  std::map<std::string, std::string> seen;  // setting -> the key that set it (two spellings exist)

  absl::Status Error(const std::string& key, const std::string& why) const {
    return KeyError(where, key, why);
  }
  absl::StatusOr<int64_t> Integer(const toml::node& v, const std::string& key, int64_t lo,
                                  int64_t hi) const {
    if (!v.is_integer()) return Error(key, "expected an integer");
    const int64_t x = *v.value<int64_t>();
    if (x < lo || x > hi) return Error(key, absl::StrCat("must be in [", lo, ", ", hi, "]"));
    return x;
  }
  absl::StatusOr<double> Number(const toml::node& v, const std::string& key) const {
    if (!v.is_number()) return Error(key, "expected a number");
    return *v.value<double>();
  }
  absl::StatusOr<std::string> String(const toml::node& v, const std::string& key) const {
    if (!v.is_string()) return Error(key, "expected a string");
    return *v.value<std::string>();
  }
  absl::StatusOr<bool> Bool(const toml::node& v, const std::string& key) const {
    if (!v.is_boolean()) return Error(key, "expected true or false");
    return *v.value<bool>();
  }
  absl::StatusOr<std::vector<std::string>> Strings(const toml::node& v,
                                                   const std::string& key) const {
    if (!v.is_array()) return Error(key, "expected a list of strings");
    std::vector<std::string> out;
    for (const toml::node& e : *v.as_array()) {
      if (!e.is_string() || e.value<std::string>()->empty())
        return Error(key, "expected a list of non-empty strings");
      out.push_back(*e.value<std::string>());
    }
    return out;
  }
  // Two spellings of one setting (Heretic 1.4's and master's) must not both appear.
  absl::Status Once(const std::string& setting, const std::string& key) {
    auto [it, fresh] = seen.emplace(setting, key);
    if (!fresh)
      return Error(key, "sets " + setting + ", which " + it->second +
                            " already set (Heretic 1.4's and master's spellings)");
    return absl::OkStatus();
  }
};

// A key that only accepts the value schism's behaviour already has; anything else is refused
// with the reason (never accepted and ignored).
absl::Status OnlyBool(Reader& r, const toml::node& v, const std::string& key, bool allowed,
                      const std::string& why) {
  auto b = r.Bool(v, key);
  if (!b.ok()) return b.status();
  if (*b != allowed) return r.Error(key, why);
  return absl::OkStatus();
}

absl::Status ReadPromptSet(Reader& r, const toml::node& node, const std::string& key,
                           v1::PromptSet* out) {
  if (!node.is_table()) return r.Error(key, "expected a table");
  for (const auto& [k, v] : *node.as_table()) {
    const std::string name(k.str());
    const std::string full = key + "." + name;
    auto s = r.String(v, full);
    if (!s.ok()) return s.status();
    if (name == "dataset" || name == "path") {
      out->set_path(*s);
    } else if (name == "split") {
      out->set_split(*s);
    } else if (name == "column") {
      if (s->empty()) return r.Error(full, "must name a column");
      out->set_column(
          *s);  // checked against the file when it is read (a text file has only "text")
    } else if (name == "commit") {
      return r.Error(full, "schism reads prompt files on disk; a Hub commit does not apply");
    } else if (name == "prefix") {
      out->set_prefix(*s);
    } else if (name == "suffix") {
      out->set_suffix(*s);
    } else if (name == "system_prompt") {
      out->set_system_prompt(*s);
    } else if (name == "residual_plot_label" || name == "residual_plot_color") {
      // Heretic uses them only for plot_residuals = true, which schism refuses.
    } else {
      return r.Error(full, "unknown key");
    }
  }
  return absl::OkStatus();
}

// Heretic's default chain_of_thought_skips: [[opener, closed], ...] exactly.
bool IsDefaultChainOfThoughtSkips(const toml::node& v) {
  const auto& skips = common::DefaultChainOfThoughtSkips();
  const toml::array* pairs = v.as_array();
  if (pairs == nullptr || pairs->size() != skips.size()) return false;
  for (size_t i = 0; i < skips.size(); ++i) {
    const toml::array* pair = (*pairs)[i].as_array();
    if (pair == nullptr || pair->size() != 2) return false;
    if ((*pair)[0].value<std::string>() != skips[i].first ||
        (*pair)[1].value<std::string>() != skips[i].second) {
      return false;
    }
  }
  return true;
}

// Heretic's default benchmarks: its tasks in order, each a table of string task/name/description.
bool IsDefaultBenchmarks(const toml::node& v) {
  const auto& tasks = common::HereticDefaultBenchmarkTasks();
  const toml::array* entries = v.as_array();
  if (entries == nullptr || entries->size() != tasks.size()) return false;
  for (size_t i = 0; i < tasks.size(); ++i) {
    const toml::table* entry = (*entries)[i].as_table();
    if (entry == nullptr || (*entry)["task"].value<std::string>() != tasks[i]) return false;
    for (const auto& [key, value] : *entry) {
      if ((key != "task" && key != "name" && key != "description") || !value.is_string())
        return false;
    }
  }
  return true;
}

// [scorer.Judge]: an OpenAI-compatible endpoint asked about each response (study.proto).
absl::Status ReadJudge(Reader& r, const toml::table& table) {
  v1::JudgeScorer* judge = r.spec.mutable_judge();
  for (const auto& [pk, pv] : table) {
    const std::string name(pk.str());
    const std::string full = "scorer.Judge." + name;
    if (name == "timeout_seconds") {
      auto x = r.Integer(pv, full, 1, 3600);
      if (!x.ok()) return x.status();
      judge->set_timeout_seconds(static_cast<int32_t>(*x));
      continue;
    }
    if (name == "api_key") {
      return r.Error(full,
                     "keys do not go into study specs (they are stored and listed); name "
                     "the worker's environment variable with api_key_env");
    }
    if (name != "url" && name != "model" && name != "api_key_env" && name != "instruction")
      return r.Error(full, "unknown key (url, model, api_key_env, timeout_seconds, instruction)");
    auto v = r.String(pv, full);
    if (!v.ok()) return v.status();
    if (name == "url") judge->set_url(*v);
    if (name == "model") judge->set_model(*v);
    if (name == "api_key_env") judge->set_api_key_env(*v);
    if (name == "instruction") judge->set_instruction(*v);
  }
  if (judge->url().empty()) return r.Error("scorer.Judge.url", "is required");
  return absl::OkStatus();
}

// [scorer.Perplexity]: held-out text (a prompt-set table under `texts`) and max_tokens.
absl::Status ReadPerplexity(Reader& r, const toml::table& table) {
  v1::PerplexityScorer* perplexity = r.spec.mutable_perplexity();
  for (const auto& [pk, pv] : table) {
    const std::string name(pk.str());
    const std::string full = "scorer.Perplexity." + name;
    if (name == "texts") {
      if (auto s = ReadPromptSet(r, pv, full, perplexity->mutable_texts()); !s.ok()) return s;
    } else if (name == "max_tokens") {
      auto x = r.Integer(pv, full, 2, 8192);
      if (!x.ok()) return x.status();
      perplexity->set_max_tokens(static_cast<int32_t>(*x));
    } else {
      return r.Error(full, "unknown key (texts, max_tokens)");
    }
  }
  if (perplexity->texts().path().empty())
    return r.Error("scorer.Perplexity.texts", "is required (a table with dataset, split, column)");
  return absl::OkStatus();
}

absl::Status ReadScorers(Reader& r, const toml::node& node) {
  if (!node.is_table()) return r.Error("scorer", "expected a table");
  for (const auto& [sk, sv] : *node.as_table()) {
    const std::string scorer(sk.str());
    const bool known = scorer == "KeywordRate" || scorer == "KLDivergence" || scorer == "Judge" ||
                       scorer == "Perplexity";
    if (!known || !sv.is_table()) {
      return r.Error("scorer." + scorer,
                     "unknown scorer (KeywordRate, KLDivergence, Judge, Perplexity)");
    }
    if (scorer == "Judge") {
      if (auto s = ReadJudge(r, *sv.as_table()); !s.ok()) return s;
      continue;
    }
    if (scorer == "Perplexity") {
      if (auto s = ReadPerplexity(r, *sv.as_table()); !s.ok()) return s;
      continue;
    }
    const bool keyword = scorer == "KeywordRate";
    for (const auto& [pk, pv] : *sv.as_table()) {
      const std::string name(pk.str());
      const std::string full = "scorer." + scorer + "." + name;
      if (name == "prompts") {
        if (auto s = r.Once(keyword ? "the refusal prompts" : "the KL prompts", full); !s.ok())
          return s;
        auto s = ReadPromptSet(
            r, pv, full, keyword ? r.spec.mutable_refusal_prompts() : r.spec.mutable_kl_prompts());
        if (!s.ok()) return s;
      } else if (name == "keyword_markers" && keyword) {
        if (auto s = r.Once("the refusal markers", full); !s.ok()) return s;
        auto markers = r.Strings(pv, full);
        if (!markers.ok()) return markers.status();
        for (const std::string& m : *markers) r.spec.add_refusal_markers(m);
      } else {
        return r.Error(full, "unknown key");
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ReadExport(Reader& r, const toml::node& node) {
  if (!node.is_table()) return r.Error("export", "expected a table");
  for (const auto& [ek, ev] : *node.as_table()) {
    const std::string name(ek.str());
    const std::string full = "export." + name;
    auto s = r.String(ev, full);
    if (!s.ok()) return s.status();
    if (name == "format") {
      if (auto o = r.Once("the export format", full); !o.ok()) return o;
      if (*s != "merged" && *s != "adapter" && *s != "both")
        return r.Error(full, "expected merged, adapter or both");
      r.spec.set_export_format(*s);
    } else if (name == "dtype") {
      if (*s != "float32" && *s != "bfloat16" && *s != "float16")
        return r.Error(full, "expected float32, bfloat16 or float16");
      r.spec.set_export_dtype(*s);
    } else {
      return r.Error(full, "unknown key");
    }
  }
  return absl::OkStatus();
}

absl::Status ReadCluster(Reader& r, const toml::node& node) {
  if (!node.is_table()) return r.Error("cluster", "expected a table");
  for (const auto& [ck, cv] : *node.as_table()) {
    const std::string name(ck.str());
    const std::string full = "cluster." + name;
    if (name == "heartbeat_seconds") {
      return r.Error(
          full,
          "workers heartbeat every third of lease_seconds; set cluster.lease_seconds instead");
    }
    auto x = r.Integer(cv, full, 1, 1000000);
    if (!x.ok()) return x.status();
    const auto v = static_cast<int32_t>(*x);
    if (name == "trials_per_worker")
      r.spec.set_trials_per_lease(v);
    else if (name == "lease_seconds")
      r.spec.set_lease_seconds(v);
    else if (name == "max_attempts")
      r.spec.set_max_attempts(v);
    else if (name == "max_failed_trials")
      r.spec.set_max_failed_trials(v);
    else if (name == "priority")
      r.spec.set_priority(v);
    else
      return r.Error(full, "unknown key");
  }
  return absl::OkStatus();
}

using KeyReader = std::function<absl::Status(Reader&, const toml::node&, const std::string&)>;

// A key whose string value goes straight into the spec.
KeyReader StringKey(std::function<void(v1::StudySpec&, const std::string&)> set) {
  return [set = std::move(set)](Reader& r, const toml::node& v, const std::string& k) {
    auto s = r.String(v, k);
    if (s.ok()) set(r.spec, *s);
    return s.status();
  };
}

// A key whose integer value in [lo, hi] goes straight into the spec.
KeyReader IntegerKey(int64_t lo, int64_t hi, std::function<void(v1::StudySpec&, int64_t)> set) {
  return [lo, hi, set = std::move(set)](Reader& r, const toml::node& v, const std::string& k) {
    auto x = r.Integer(v, k, lo, hi);
    if (x.ok()) set(r.spec, *x);
    return x.status();
  };
}

// Every top-level key: Heretic 1.4.0's Settings, master's plugin tables and schism's own. Each
// either changes what schism does (with Heretic's meaning and default) or is refused with the
// reason; tests/coordinator/study_config_test.cc walks this table.
const std::map<std::string, KeyReader>& TopLevelKeys() {
  static const auto* keys = new std::map<std::string, KeyReader>{
      {"model", StringKey([](v1::StudySpec& s, const std::string& x) { s.set_model(x); })},
      {"name", StringKey([](v1::StudySpec& s, const std::string& x) { s.set_name(x); })},
      {"quantization", StringKey([](v1::StudySpec& s, const std::string& x) { s.set_quantization(x); })},
      {"system_prompt", StringKey([](v1::StudySpec& s, const std::string& x) { s.set_system_prompt(x); })},
      {"row_normalization", StringKey([](v1::StudySpec& s, const std::string& x) { s.set_row_normalization(x); })},
      {"response_prefix", StringKey([](v1::StudySpec& s, const std::string& x) { s.set_response_prefix(x); })},
      {"objective", [](Reader& r, const toml::node& v, const std::string& k) {
         auto s = r.String(v, k);
         if (!s.ok()) return s.status();
         if (*s != "raw" && *s != "heretic-1.4") return r.Error(k, "expected \"raw\" or \"heretic-1.4\"");
         r.spec.set_objective(*s);
         return absl::OkStatus();
       }},
      {"n_trials", IntegerKey(1, 100000, [](v1::StudySpec& s, int64_t x) { s.set_n_trials(static_cast<int32_t>(x)); })},
      // 0 is Heretic's "no random trials", which the spec cannot say (0 there means the default).
      {"n_startup_trials", IntegerKey(1, 1000000, [](v1::StudySpec& s, int64_t x) { s.set_n_startup_trials(static_cast<int32_t>(x)); })},
      {"max_response_length", IntegerKey(1, 4096, [](v1::StudySpec& s, int64_t x) { s.set_max_response_length(static_cast<int32_t>(x)); })},
      {"batch_size", [](Reader& r, const toml::node& v, const std::string& k) {
         auto x = r.Integer(v, k, 0, 65536);  // 0 = auto
         if (x.ok()) r.batch_size = *x;
         return x.status();
       }},
      {"max_batch_size", [](Reader& r, const toml::node& v, const std::string& k) {
         auto x = r.Integer(v, k, 1, 65536);
         if (x.ok()) r.max_batch_size = *x;
         return x.status();
       }},
      {"seed", [](Reader& r, const toml::node& v, const std::string& k) {
         auto x = r.Integer(v, k, 0, 4294967295LL);
         if (x.ok()) r.spec.set_seed(static_cast<uint32_t>(*x));
         return x.status();
       }},
      {"orthogonalize_direction", [](Reader& r, const toml::node& v, const std::string& k) {
         auto b = r.Bool(v, k);
         if (b.ok()) r.spec.set_orthogonalize_direction(*b);
         return b.status();
       }},
      {"winsorization_quantile", [](Reader& r, const toml::node& v, const std::string& k) {
         auto q = r.Number(v, k);
         if (!q.ok()) return q.status();
         if (!(*q >= 0 && *q <= 1)) return r.Error(k, "must be in [0, 1] (1 = off)");
         r.spec.set_winsorization_quantile(*q);
         return absl::OkStatus();
       }},
      {"kl_divergence_scale", [](Reader& r, const toml::node& v, const std::string& k) {
         auto x = r.Number(v, k);
         if (!x.ok()) return x.status();
         if (!(*x > 0) || !std::isfinite(*x)) return r.Error(k, "must be a positive number");
         r.spec.set_kl_divergence_scale(*x);
         return absl::OkStatus();
       }},
      {"kl_divergence_target", [](Reader& r, const toml::node& v, const std::string& k) {
         auto x = r.Number(v, k);
         if (!x.ok()) return x.status();
         if (!(*x >= 0) || !std::isfinite(*x)) return r.Error(k, "must be a number >= 0");
         r.spec.set_kl_divergence_target(*x);
         return absl::OkStatus();
       }},
      {"refusal_markers", [](Reader& r, const toml::node& v, const std::string& k) {
         if (auto s = r.Once("the refusal markers", k); !s.ok()) return s;
         auto markers = r.Strings(v, k);
         if (!markers.ok()) return markers.status();
         for (const std::string& m : *markers) r.spec.add_refusal_markers(m);
         return absl::OkStatus();
       }},
      {"dtypes", [](Reader& r, const toml::node& v, const std::string& k) {
         auto list = r.Strings(v, k);
         if (!list.ok()) return list.status();
         for (const std::string& d : *list) {
           if (d != "auto" && d != "float32" && d != "bfloat16" && d != "float16") {
             return r.Error(k, "\"" + d + "\": schism computes in auto, float32, bfloat16 or float16");
           }
           r.spec.add_dtypes(d);
         }
         return absl::OkStatus();
       }},
      {"device_map", [](Reader& r, const toml::node& v, const std::string& k) {
         if (!v.is_string() || *v.value<std::string>() != "auto") {
           return r.Error(k, "only \"auto\": each worker places the model on its own --device (cpu|cuda:N)");
         }
         return absl::OkStatus();
       }},
      {"max_memory", [](Reader& r, const toml::node&, const std::string& k) {
         return r.Error(k, "schism does not offload layers; give each worker a device that holds the model (4-bit with quantization = \"nf4\")");
       }},
      {"offload_outputs_to_cpu", [](Reader& r, const toml::node& v, const std::string& k) {
         return OnlyBool(r, v, k, true,
                         "schism never keeps per-prompt residuals or log-probabilities on the device (it accumulates "
                         "running sums), which is what true asks for; false cannot be honoured");
       }},
      {"print_responses", [](Reader& r, const toml::node& v, const std::string& k) {
         return OnlyBool(r, v, k, false, "schism workers do not print responses");
       }},
      {"print_residual_geometry", [](Reader& r, const toml::node& v, const std::string& k) {
         return OnlyBool(r, v, k, false, "schism does not print residual geometry");
       }},
      {"plot_residuals", [](Reader& r, const toml::node& v, const std::string& k) {
         r.plot_residuals = v.is_boolean() && *v.value<bool>();
         return OnlyBool(r, v, k, false, "schism draws no residual plots");
       }},
      {"residual_plot_path", [](Reader& r, const toml::node& v, const std::string& k) { return r.String(v, k).status(); }},
      {"residual_plot_title", [](Reader& r, const toml::node& v, const std::string& k) { return r.String(v, k).status(); }},
      {"residual_plot_style", [](Reader& r, const toml::node& v, const std::string& k) { return r.String(v, k).status(); }},
      {"full_normalization_lora_rank", [](Reader& r, const toml::node& v, const std::string& k) {
         // The rank of Heretic's LoRA approximation of full normalization. schism's is exact (a
         // rank-1 adapter and a row scale), so there is no rank to choose: Heretic's default 3
         // is accepted so that a default config runs, any other value is refused.
         auto x = r.Integer(v, k, 1, 4096);
         if (!x.ok()) return x.status();
         if (*x != 3) return r.Error(k, "schism's full row normalization is exact (rank-1 adapter + row scale); there is no approximation rank to set");
         return absl::OkStatus();
       }},
      {"chain_of_thought_skips", [](Reader& r, const toml::node& v, const std::string& k) {
         // schism applies Heretic's four built-in pairs: the default list (every config.default.toml
         // has it) is what it does, any other list cannot be honoured.
         if (!IsDefaultChainOfThoughtSkips(v)) {
           return r.Error(k, "custom pairs are not supported; schism applies Heretic's four built-in pairs (the default list)");
         }
         return absl::OkStatus();
       }},
      {"model_commit", [](Reader& r, const toml::node&, const std::string& k) {
         return r.Error(k, "schism loads model files on disk; a Hub commit does not apply");
       }},
      {"evaluate_model", [](Reader& r, const toml::node&, const std::string& k) {
         return r.Error(k, "a command, not a study setting: use `schism evaluate --model M`");
       }},
      {"reproduce", [](Reader& r, const toml::node&, const std::string& k) {
         return r.Error(k, "a command, not a study setting: use `schism export --model M --study DIR --trial N`");
       }},
      {"collect_reproducibles", [](Reader& r, const toml::node&, const std::string& k) {
         return r.Error(k, "downloads from the Hugging Face Hub; schism has no network side");
       }},
      {"benchmarks", [](Reader& r, const toml::node& v, const std::string& k) {
         // What Heretic's menu offers after a study. Heretic's default list is accepted so that
         // its config.default.toml runs (it changes nothing in Heretic either until a user picks
         // an entry from the menu); a list of one's own asks for a menu schism does not have.
         if (!IsDefaultBenchmarks(v)) {
           return r.Error(k, "schism offers no benchmark menu after a study (only Heretic's default list is accepted, as it changes nothing)");
         }
         return absl::OkStatus();
       }},
      {"study_checkpoint_dir", StringKey([](v1::StudySpec& s, const std::string& x) { s.set_study_checkpoint_dir(x); })},
      {"export_strategy", [](Reader& r, const toml::node& v, const std::string& k) {
         auto s = r.String(v, k);
         if (!s.ok()) return s.status();
         if (*s != "merge" && *s != "adapter") return r.Error(k, "expected \"merge\" or \"adapter\"");
         if (auto o = r.Once("the export format", k); !o.ok()) return o;
         r.spec.set_export_format(*s == "merge" ? "merged" : "adapter");
         return absl::OkStatus();
       }},
      {"max_shard_size", [](Reader& r, const toml::node& v, const std::string& k) {
         auto size = v.is_integer()
                         ? absl::StatusOr<uint64_t>(static_cast<uint64_t>(std::max<int64_t>(0, *v.value<int64_t>())))
                     : v.is_string() ? common::ParseByteSize(*v.value<std::string>())
                                     : absl::StatusOr<uint64_t>(absl::InvalidArgumentError("expected \"5GB\" or bytes"));
         if (!size.ok() || *size == 0) return r.Error(k, size.ok() ? "must be positive" : std::string(size.status().message()));
         r.spec.set_max_shard_bytes(*size);
         return absl::OkStatus();
       }},
      {"good_prompts", [](Reader& r, const toml::node& v, const std::string& k) {
         return ReadPromptSet(r, v, k, r.spec.mutable_good_prompts());
       }},
      {"bad_prompts", [](Reader& r, const toml::node& v, const std::string& k) {
         return ReadPromptSet(r, v, k, r.spec.mutable_bad_prompts());
       }},
      {"good_evaluation_prompts", [](Reader& r, const toml::node& v, const std::string& k) {
         if (auto s = r.Once("the KL prompts", k); !s.ok()) return s;
         return ReadPromptSet(r, v, k, r.spec.mutable_kl_prompts());
       }},
      {"bad_evaluation_prompts", [](Reader& r, const toml::node& v, const std::string& k) {
         if (auto s = r.Once("the refusal prompts", k); !s.ok()) return s;
         return ReadPromptSet(r, v, k, r.spec.mutable_refusal_prompts());
       }},
      {"scorer", [](Reader& r, const toml::node& v, const std::string&) { return ReadScorers(r, v); }},
      {"export", [](Reader& r, const toml::node& v, const std::string&) { return ReadExport(r, v); }},
      {"cluster", [](Reader& r, const toml::node& v, const std::string&) { return ReadCluster(r, v); }},
  };
  return *keys;
}

}  // namespace

std::vector<std::string> StudyConfigKeys() {
  std::vector<std::string> out;
  for (const auto& [name, reader] : TopLevelKeys()) out.push_back(name);
  return out;
}

absl::StatusOr<v1::StudySpec> StudySpecFromToml(const std::string& text, const std::string& where) {
  toml::table root;
  try {  // toml++ reports syntax errors by exception; they stay inside this function
    root = toml::parse(text, where);
  } catch (const toml::parse_error& e) {
    return absl::InvalidArgumentError(absl::StrCat(where, ":",
                                                   static_cast<uint64_t>(e.source().begin.line),
                                                   ": ", std::string(e.description())));
  }
  Reader r;
  r.where = where;
  r.spec.set_orthogonalize_direction(true);
  for (const auto& [k, v] : root) {
    const std::string key(k.str());
    auto it = TopLevelKeys().find(key);
    if (it == TopLevelKeys().end()) return r.Error(key, "unknown key");
    if (auto s = it->second(r, v, key); !s.ok()) return s;
  }
  // Heretic: batch_size 0 = auto, which max_batch_size bounds; schism's auto is 32 rows.
  if (r.batch_size.value_or(0) > 0) {
    r.spec.set_batch_size(static_cast<int32_t>(*r.batch_size));
  } else if (r.max_batch_size) {
    r.spec.set_batch_size(static_cast<int32_t>(std::min<int64_t>(32, *r.max_batch_size)));
  }
  return r.spec;
}

absl::StatusOr<v1::StudySpec> StudySpecFromTomlFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  return StudySpecFromToml(ss.str(), path);
}

}  // namespace schism::coordinator
