#include "coordinator/study_config.h"

#include <toml++/toml.h>

#include <fstream>
#include <set>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/byte_size.h"

namespace schism::coordinator {
namespace {

absl::Status KeyError(const std::string& where, const std::string& key, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", key, ": ", why));
}

absl::Status ReadPromptSet(const toml::table& table, const std::string& where, const std::string& key,
                           v1::PromptSet* out) {
  for (const auto& [k, v] : table) {
    const std::string name(k.str());
    const std::string full = key + "." + name;
    if (name == "dataset" || name == "path") {
      if (!v.is_string()) return KeyError(where, full, "expected a string (a prompt file path)");
      out->set_path(*v.value<std::string>());
    } else if (name == "split") {
      if (!v.is_string()) return KeyError(where, full, "expected a string such as \"[:400]\"");
      out->set_split(*v.value<std::string>());
    } else if (name == "column" || name == "residual_plot_label" || name == "residual_plot_color") {
      // Accepted for Heretic compatibility; text files have no columns, plots are not drawn.
    } else {
      return KeyError(where, full, "unknown key");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::StudySpec> StudySpecFromToml(const std::string& text, const std::string& where) {
  toml::table root;
  try {  // toml++ reports syntax errors by exception; they stay inside this function
    root = toml::parse(text, where);
  } catch (const toml::parse_error& e) {
    return absl::InvalidArgumentError(absl::StrCat(where, ":", static_cast<uint64_t>(e.source().begin.line), ": ",
                                                   std::string(e.description())));
  }
  v1::StudySpec spec;
  spec.set_orthogonalize_direction(true);
  auto integer = [&](const toml::node& v, const std::string& key, int64_t lo, int64_t hi) -> absl::StatusOr<int64_t> {
    if (!v.is_integer()) return KeyError(where, key, "expected an integer");
    const int64_t x = *v.value<int64_t>();
    if (x < lo || x > hi) return KeyError(where, key, absl::StrCat("must be in [", lo, ", ", hi, "]"));
    return x;
  };
  auto string = [&](const toml::node& v, const std::string& key) -> absl::StatusOr<std::string> {
    if (!v.is_string()) return KeyError(where, key, "expected a string");
    return *v.value<std::string>();
  };
  for (const auto& [k, v] : root) {
    const std::string key(k.str());
    if (key == "model" || key == "quantization" || key == "system_prompt" || key == "row_normalization" ||
        key == "response_prefix" || key == "name") {
      auto s = string(v, key);
      if (!s.ok()) return s.status();
      if (key == "model") spec.set_model(*s);
      if (key == "quantization") spec.set_quantization(*s);
      if (key == "system_prompt") spec.set_system_prompt(*s);
      if (key == "row_normalization") spec.set_row_normalization(*s);
      if (key == "response_prefix") spec.set_response_prefix(*s);
      if (key == "name") spec.set_name(*s);
    } else if (key == "n_trials" || key == "n_startup_trials" || key == "max_response_length" ||
               key == "batch_size" || key == "max_batch_size" || key == "seed") {
      auto x = integer(v, key, 0, key == "seed" ? 4294967295LL : 1000000);
      if (!x.ok()) return x.status();
      if (key == "n_trials") spec.set_n_trials(static_cast<int32_t>(*x));
      if (key == "n_startup_trials") spec.set_n_startup_trials(static_cast<int32_t>(*x));
      if (key == "max_response_length") spec.set_max_response_length(static_cast<int32_t>(*x));
      if (key == "batch_size" && *x > 0) spec.set_batch_size(static_cast<int32_t>(*x));
      if (key == "seed") spec.set_seed(static_cast<uint32_t>(*x));
    } else if (key == "orthogonalize_direction") {
      if (!v.is_boolean()) return KeyError(where, key, "expected true or false");
      spec.set_orthogonalize_direction(*v.value<bool>());
    } else if (key == "winsorization_quantile" || key == "dtypes" || key == "device_map" ||
               key == "print_responses" || key == "kl_divergence_scale" || key == "kl_divergence_target") {
      // Heretic keys accepted for compatibility; schism's defaults apply.
    } else if (key == "good_prompts" || key == "bad_prompts") {
      if (!v.is_table()) return KeyError(where, key, "expected a table");
      auto s = ReadPromptSet(*v.as_table(), where, key,
                             key == "good_prompts" ? spec.mutable_good_prompts() : spec.mutable_bad_prompts());
      if (!s.ok()) return s;
    } else if (key == "scorer") {
      if (!v.is_table()) return KeyError(where, key, "expected a table");
      for (const auto& [sk, sv] : *v.as_table()) {
        const std::string scorer(sk.str());
        if ((scorer != "KeywordRate" && scorer != "KLDivergence") || !sv.is_table()) {
          return KeyError(where, "scorer." + scorer, "unknown scorer (KeywordRate, KLDivergence)");
        }
        for (const auto& [pk, pv] : *sv.as_table()) {
          const std::string name(pk.str());
          const std::string full = "scorer." + scorer + "." + name;
          if (name == "prompts" && pv.is_table()) {
            auto s = ReadPromptSet(*pv.as_table(), where, full,
                                   scorer == "KeywordRate" ? spec.mutable_refusal_prompts() : spec.mutable_kl_prompts());
            if (!s.ok()) return s;
          } else if (name == "keyword_markers" && scorer == "KeywordRate") {
            return KeyError(where, full, "custom markers are not supported yet; remove the key to use Heretic's list");
          } else {
            return KeyError(where, full, "unknown key");
          }
        }
      }
    } else if (key == "max_shard_size") {
      auto size = v.is_integer() ? absl::StatusOr<uint64_t>(static_cast<uint64_t>(std::max<int64_t>(0, *v.value<int64_t>())))
                                 : v.is_string() ? common::ParseByteSize(*v.value<std::string>())
                                                 : absl::StatusOr<uint64_t>(absl::InvalidArgumentError("expected \"5GB\" or bytes"));
      if (!size.ok() || *size == 0) {
        return KeyError(where, key, size.ok() ? "must be positive" : std::string(size.status().message()));
      }
      spec.set_max_shard_bytes(*size);
    } else if (key == "export") {
      if (!v.is_table()) return KeyError(where, key, "expected a table");
      for (const auto& [ek, ev] : *v.as_table()) {
        const std::string name(ek.str());
        const std::string full = "export." + name;
        auto s = string(ev, full);
        if (!s.ok()) return s.status();
        if (name == "format") {
          if (*s != "merged" && *s != "adapter" && *s != "both") return KeyError(where, full, "expected merged, adapter or both");
          spec.set_export_format(*s);
        } else if (name == "dtype") {
          if (*s != "float32" && *s != "bfloat16" && *s != "float16") {
            return KeyError(where, full, "expected float32, bfloat16 or float16");
          }
          spec.set_export_dtype(*s);
        } else {
          return KeyError(where, full, "unknown key");
        }
      }
    } else if (key == "cluster") {
      if (!v.is_table()) return KeyError(where, key, "expected a table");
      for (const auto& [ck, cv] : *v.as_table()) {
        const std::string name(ck.str());
        const std::string full = "cluster." + name;
        auto x = integer(cv, full, 1, 1000000);
        if (!x.ok()) return x.status();
        if (name == "trials_per_worker") spec.set_trials_per_lease(static_cast<int32_t>(*x));
        else if (name == "lease_seconds") spec.set_lease_seconds(static_cast<int32_t>(*x));
        else if (name == "max_attempts") spec.set_max_attempts(static_cast<int32_t>(*x));
        else if (name == "max_failed_trials") spec.set_max_failed_trials(static_cast<int32_t>(*x));
        else if (name == "priority") spec.set_priority(static_cast<int32_t>(*x));
        else if (name == "heartbeat_seconds") { /* workers beat at a third of the lease */ }
        else return KeyError(where, full, "unknown key");
      }
    } else {
      return KeyError(where, key, "unknown key");
    }
  }
  return spec;
}

absl::StatusOr<v1::StudySpec> StudySpecFromTomlFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  return StudySpecFromToml(ss.str(), path);
}

}  // namespace schism::coordinator
