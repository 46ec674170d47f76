#include "common/heretic_reproduce.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace schism::common {
namespace {

// Ordered: keys are read, and errors and not_applied follow, in the file's order.
using json = nlohmann::ordered_json;

// Reads typed values out of the parsed file; every error names the file and the JSON path.
class Reader {
 public:
  explicit Reader(std::string where) : where_(std::move(where)) {}

  absl::Status Error(const std::string& path, const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat(where_, ": ", path, " ", what));
  }

  absl::StatusOr<const json*> Object(const json& v, const std::string& path) const {
    if (!v.is_object()) return Error(path, "must be an object");
    return &v;
  }
  absl::StatusOr<std::string> String(const json& v, const std::string& path) const {
    if (!v.is_string()) return Error(path, "must be a string");
    return v.get<std::string>();
  }
  // A string, or null (unset).
  absl::StatusOr<std::optional<std::string>> NullableString(const json& v,
                                                            const std::string& path) const {
    if (v.is_null()) return std::optional<std::string>();
    auto s = String(v, path);
    if (!s.ok()) return Error(path, "must be a string or null");
    return std::optional<std::string>(*s);
  }
  absl::StatusOr<double> Number(const json& v, const std::string& path) const {
    if (!v.is_number()) return Error(path, "must be a number");
    const double x = v.get<double>();
    if (!std::isfinite(x)) return Error(path, "must be a finite number");
    return x;
  }
  absl::StatusOr<int64_t> Integer(const json& v, const std::string& path, int64_t lo,
                                  int64_t hi) const {
    if (!v.is_number_integer()) return Error(path, "must be an integer");
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi)) {
      return Error(path, absl::StrCat("must be in [", lo, ", ", hi, "]"));
    }
    const int64_t x = v.get<int64_t>();
    if (x < lo || x > hi) return Error(path, absl::StrCat("must be in [", lo, ", ", hi, "]"));
    return x;
  }
  absl::StatusOr<bool> Bool(const json& v, const std::string& path) const {
    if (!v.is_boolean()) return Error(path, "must be true or false");
    return v.get<bool>();
  }
  absl::StatusOr<std::vector<std::string>> Strings(const json& v, const std::string& path) const {
    if (!v.is_array()) return Error(path, "must be a list of strings");
    std::vector<std::string> out;
    for (size_t i = 0; i < v.size(); ++i) {
      if (!v[i].is_string()) return Error(absl::StrCat(path, "[", i, "]"), "must be a string");
      out.push_back(v[i].get<std::string>());
    }
    return out;
  }
  // One of `choices`.
  absl::StatusOr<std::string> Choice(const json& v, const std::string& path,
                                     const std::vector<std::string>& choices) const {
    auto s = String(v, path);
    if (!s.ok()) return s.status();
    for (const std::string& c : choices) {
      if (*s == c) return *s;
    }
    return Error(path, absl::StrCat("\"", *s, "\" is not one of \"",
                                    absl::StrJoin(choices, "\", \""), "\""));
  }

 private:
  std::string where_;
};

#define SCHISM_ASSIGN_OR_RETURN(lhs, expr)      \
  auto lhs##_or = (expr);                       \
  if (!lhs##_or.ok()) return lhs##_or.status(); \
  auto lhs = *std::move(lhs##_or)

// max_shard_size as transformers' convert_file_size_to_int reads a string: an integer, then
// GiB/MiB/KiB (powers of 2) or GB/MB/KB (powers of 10; a lower-case final "b" means bits, so
// divide by 8), units in any case.
std::optional<uint64_t> HuggingFaceFileSize(const std::string& text) {
  struct Unit {
    const char* name;
    uint64_t factor;
  };
  for (const Unit& unit :
       {Unit{"GIB", 1ull << 30}, Unit{"MIB", 1ull << 20}, Unit{"KIB", 1ull << 10},
        Unit{"GB", 1000000000ull}, Unit{"MB", 1000000ull}, Unit{"KB", 1000ull}}) {
    if (!absl::EndsWithIgnoreCase(text, unit.name)) continue;
    const std::string digits = text.substr(0, text.size() - std::string(unit.name).size());
    uint64_t n = 0;
    if (digits.empty() || !std::all_of(digits.begin(), digits.end(), absl::ascii_isdigit) ||
        !absl::SimpleAtoi(digits, &n) || n > UINT64_MAX / unit.factor) {
      return std::nullopt;
    }
    const bool bits = std::string(unit.name).size() == 2 && text.back() == 'b';
    return bits ? n * unit.factor / 8 : n * unit.factor;
  }
  return std::nullopt;
}

// The settings keys that cannot change the model or its scores whatever their value (see the
// header); full_normalization_lora_rank and chain_of_thought_skips are so only conditionally.
const std::set<std::string>& NotAppliedSettings() {
  static const auto* keys = new std::set<std::string>{"device_map",
                                                      "max_memory",
                                                      "offload_outputs_to_cpu",
                                                      "n_trials",
                                                      "n_startup_trials",
                                                      "seed",
                                                      "max_batch_size",
                                                      "print_responses",
                                                      "print_residual_geometry",
                                                      "plot_residuals",
                                                      "residual_plot_path",
                                                      "residual_plot_title",
                                                      "residual_plot_style",
                                                      "study_checkpoint_dir",
                                                      "benchmarks",
                                                      "collect_reproducibles",
                                                      "reproduce"};
  return *keys;
}

absl::StatusOr<HereticDatasetSpec> ReadDataset(const Reader& r, const json& v,
                                               const std::string& path,
                                               std::vector<std::string>* not_applied) {
  SCHISM_ASSIGN_OR_RETURN(object, r.Object(v, path));
  HereticDatasetSpec spec;
  bool has_dataset = false;
  for (auto it = object->begin(); it != object->end(); ++it) {
    const std::string& key = it.key();
    const std::string full = path + "." + key;
    if (key == "dataset") {
      SCHISM_ASSIGN_OR_RETURN(s, r.String(*it, full));
      if (s.empty()) return r.Error(full, "must name a dataset");
      spec.dataset = s;
      has_dataset = true;
    } else if (key == "commit" || key == "split" || key == "column" || key == "system_prompt") {
      SCHISM_ASSIGN_OR_RETURN(s, r.NullableString(*it, full));
      (key == "commit"   ? spec.commit
       : key == "split"  ? spec.split
       : key == "column" ? spec.column
                         : spec.system_prompt) = s;
    } else if (key == "prefix" || key == "suffix") {
      SCHISM_ASSIGN_OR_RETURN(s, r.String(*it, full));
      (key == "prefix" ? spec.prefix : spec.suffix) = s;
    } else if (key == "residual_plot_label" || key == "residual_plot_color") {
      SCHISM_ASSIGN_OR_RETURN(s, r.NullableString(*it, full));
      (void)s;
      not_applied->push_back(full);
    } else {
      return r.Error(full, "is not a key of Heretic's dataset specification");
    }
  }
  if (!has_dataset) return r.Error(path + ".dataset", "is missing");
  return spec;
}

absl::StatusOr<HereticSettings> ReadSettings(const Reader& r, const json& v) {
  SCHISM_ASSIGN_OR_RETURN(object, r.Object(v, "settings"));
  HereticSettings s;
  bool has_model = false;
  std::optional<int64_t> lora_rank;
  bool has_cot_skips = false;
  for (auto it = object->begin(); it != object->end(); ++it) {
    const std::string& key = it.key();
    const std::string path = "settings." + key;
    const json& value = *it;
    if (key == "model") {
      SCHISM_ASSIGN_OR_RETURN(x, r.String(value, path));
      if (x.empty()) return r.Error(path, "must name a model");
      s.model = x;
      has_model = true;
    } else if (key == "model_commit") {
      SCHISM_ASSIGN_OR_RETURN(x, r.NullableString(value, path));
      s.model_commit = x;
    } else if (key == "dtypes") {
      SCHISM_ASSIGN_OR_RETURN(x, r.Strings(value, path));
      for (size_t i = 0; i < x.size(); ++i) {
        if (x[i] != "auto" && x[i] != "float32" && x[i] != "bfloat16" && x[i] != "float16") {
          return r.Error(absl::StrCat(path, "[", i, "]"),
                         absl::StrCat("\"", x[i],
                                      "\": schism computes in auto, float32, bfloat16 "
                                      "or float16"));
        }
      }
      s.dtypes = x;
    } else if (key == "quantization") {
      SCHISM_ASSIGN_OR_RETURN(x, r.Choice(value, path, {"none", "bnb_4bit"}));
      s.quantization = x;
    } else if (key == "batch_size") {
      SCHISM_ASSIGN_OR_RETURN(x, r.Integer(value, path, 0, 65536));
      s.batch_size = x;
    } else if (key == "max_response_length") {
      SCHISM_ASSIGN_OR_RETURN(x, r.Integer(value, path, 1, 1 << 20));
      s.max_response_length = x;
    } else if (key == "response_prefix") {
      SCHISM_ASSIGN_OR_RETURN(x, r.NullableString(value, path));
      s.response_prefix = x;
    } else if (key == "kl_divergence_scale") {
      SCHISM_ASSIGN_OR_RETURN(x, r.Number(value, path));
      if (!(x > 0)) return r.Error(path, "must be a positive number");
      s.kl_divergence_scale = x;
    } else if (key == "kl_divergence_target") {
      SCHISM_ASSIGN_OR_RETURN(x, r.Number(value, path));
      if (!(x >= 0)) return r.Error(path, "must be a number >= 0");
      s.kl_divergence_target = x;
    } else if (key == "orthogonalize_direction") {
      SCHISM_ASSIGN_OR_RETURN(x, r.Bool(value, path));
      s.orthogonalize_direction = x;
    } else if (key == "row_normalization") {
      SCHISM_ASSIGN_OR_RETURN(x, r.Choice(value, path, {"none", "pre", "full"}));
      s.row_normalization = x;
    } else if (key == "full_normalization_lora_rank") {
      SCHISM_ASSIGN_OR_RETURN(x, r.Integer(value, path, 1, 1 << 20));
      lora_rank = x;
    } else if (key == "winsorization_quantile") {
      SCHISM_ASSIGN_OR_RETURN(x, r.Number(value, path));
      if (!(x >= 0 && x <= 1)) return r.Error(path, "must be in [0, 1] (1 = off)");
      s.winsorization_quantile = x;
    } else if (key == "export_strategy") {
      if (!value.is_null()) {
        SCHISM_ASSIGN_OR_RETURN(x, r.Choice(value, path, {"merge", "adapter"}));
        s.export_strategy = x;
      }
    } else if (key == "max_shard_size") {
      std::optional<uint64_t> bytes;
      if (value.is_number_integer()) {
        SCHISM_ASSIGN_OR_RETURN(x, r.Integer(value, path, 1, INT64_MAX));
        bytes = static_cast<uint64_t>(x);
      } else if (value.is_string()) {
        bytes = HuggingFaceFileSize(value.get<std::string>());
        if (!bytes || *bytes == 0) {
          return r.Error(path, absl::StrCat("\"", value.get<std::string>(),
                                            "\" is not a size save_pretrained reads (an integer "
                                            "and GB, MB, KB, GiB, MiB or KiB)"));
        }
      } else {
        return r.Error(path, "must be a size string (\"5GB\") or a number of bytes");
      }
      s.max_shard_bytes = bytes;
    } else if (key == "refusal_markers") {
      SCHISM_ASSIGN_OR_RETURN(x, r.Strings(value, path));
      s.refusal_markers = x;
    } else if (key == "system_prompt") {
      SCHISM_ASSIGN_OR_RETURN(x, r.String(value, path));
      s.system_prompt = x;
    } else if (key == "good_prompts" || key == "bad_prompts" || key == "good_evaluation_prompts" ||
               key == "bad_evaluation_prompts") {
      SCHISM_ASSIGN_OR_RETURN(x, ReadDataset(r, value, path, &s.not_applied));
      (key == "good_prompts"              ? s.good_prompts
       : key == "bad_prompts"             ? s.bad_prompts
       : key == "good_evaluation_prompts" ? s.good_evaluation_prompts
                                          : s.bad_evaluation_prompts) = x;
    } else if (key == "evaluate_model") {
      if (!value.is_null()) {
        return r.Error(path,
                       "makes Heretic evaluate another model instead of reproducing this one "
                       "(use `schism evaluate --model M`)");
      }
    } else if (key == "chain_of_thought_skips") {
      if (!value.is_array()) return r.Error(path, "must be a list of pairs of strings");
      has_cot_skips = true;
    } else if (key == "trust_remote_code") {
      // Heretic 1.3.0's, never written (exclude=True); 1.4.0 refuses it as unknown.
      return r.Error(path, "is not a Heretic 1.4.0 setting (schism runs no model code)");
    } else if (NotAppliedSettings().count(key) > 0) {
      if (key == "offload_outputs_to_cpu") {
        SCHISM_ASSIGN_OR_RETURN(x, r.Bool(value, path));
        (void)x;
      } else if (key == "device_map" && !value.is_string() && !value.is_object()) {
        return r.Error(path, "must be a string or an object");
      } else if (key == "max_memory" && !value.is_null() && !value.is_object()) {
        return r.Error(path, "must be an object or null");
      } else if (key == "n_trials" || key == "n_startup_trials") {
        SCHISM_ASSIGN_OR_RETURN(x, r.Integer(value, path, 0, INT64_MAX));
        (void)x;
      } else if (key == "seed" && !value.is_null()) {
        SCHISM_ASSIGN_OR_RETURN(x, r.Integer(value, path, 0, INT64_MAX));
        (void)x;
      }
      s.not_applied.push_back(path);
    } else {
      return r.Error(path, "is not a Heretic setting");
    }
  }
  if (!has_model) return r.Error("settings.model", "is missing");
  if (lora_rank) {
    if (s.row_normalization.value_or("full") != "full") {
      s.not_applied.push_back("settings.full_normalization_lora_rank");
    } else if (*lora_rank != 3) {
      // As coordinator/study_config.cc: Heretic's default 3 is accepted so that a default run
      // reproduces; schism's full normalization is exact, with no approximation rank to choose.
      return r.Error("settings.full_normalization_lora_rank",
                     "must be 3 with row_normalization \"full\": schism's full row normalization "
                     "is exact (rank-1 adapter + row scale), with no approximation rank to set");
    }
  }
  if (has_cot_skips) {
    if (!s.response_prefix) {
      return r.Error("settings.chain_of_thought_skips",
                     "is set and response_prefix is not: schism detects the prefix with Heretic's "
                     "four built-in pairs only");
    }
    s.not_applied.push_back("settings.chain_of_thought_skips");
  }
  return s;
}

// schism's min_weight, the fraction of max_weight: Heretic stored fraction * max_weight, and
// common::LayerWeights multiplies back, so it must give Heretic's value exactly. The quotient does
// for such products; for other values (an edited file) its nearest neighbours are tried, and
// where no double gives the value exactly the quotient stays (an ulp off).
double MinWeightFraction(double min_weight, double max_weight) {
  const double q = min_weight / max_weight;
  double up = q, down = q;
  for (int step = 0; step < 8; ++step) {
    if (up * max_weight == min_weight) return up;
    if (down * max_weight == min_weight) return down;
    up = std::nextafter(up, INFINITY);
    down = std::nextafter(down, -INFINITY);
  }
  return q;
}

absl::Status ReadParameters(const Reader& r, const json& v, HereticReproduction* out) {
  SCHISM_ASSIGN_OR_RETURN(object, r.Object(v, "parameters"));
  for (auto it = object->begin(); it != object->end(); ++it) {
    if (it.key() != "direction_index" && it.key() != "abliteration_parameters") {
      return r.Error("parameters." + it.key(), "is not a key of Heretic's parameters");
    }
  }
  if (!object->contains("direction_index")) {
    return r.Error("parameters.direction_index", "is missing");
  }
  const json& index = (*object)["direction_index"];
  if (index.is_null()) {
    out->params["direction_scope"] = std::string("per layer");
    out->params["direction_index"] = 0.0;
  } else {
    auto x = r.Number(index, "parameters.direction_index");
    if (!x.ok()) return r.Error("parameters.direction_index", "must be a number or null");
    out->params["direction_scope"] = std::string("global");
    out->params["direction_index"] = *x;
  }
  const std::string path = "parameters.abliteration_parameters";
  if (!object->contains("abliteration_parameters")) return r.Error(path, "is missing");
  SCHISM_ASSIGN_OR_RETURN(components, r.Object((*object)["abliteration_parameters"], path));
  if (components->empty()) return r.Error(path, "names no component");
  // Heretic 1.3.0 and 1.4.0 name the components as schism does (heretic/model.py
  // get_layer_modules); MoE experts' down projections are mlp.down_proj in both.
  const std::vector<std::string> known = {kAttentionComponent, kMlpComponent};
  for (auto it = components->begin(); it != components->end(); ++it) {
    if (std::find(known.begin(), known.end(), it.key()) == known.end()) {
      return r.Error(path, absl::StrCat("names component \"", it.key(),
                                        "\", which schism does not "
                                        "abliterate (it knows ",
                                        absl::StrJoin(known, ", "), ")"));
    }
  }
  for (const std::string& component : known) {
    const std::string prefix = component + ".";
    if (!components->contains(component)) {
      out->absent_components.push_back(component);
      out->params[prefix + "max_weight"] = 0.0;
      out->params[prefix + "max_weight_position"] = 0.0;
      out->params[prefix + "min_weight"] = 0.0;
      out->params[prefix + "min_weight_distance"] = 1.0;
      continue;
    }
    const std::string cpath = path + "." + component;
    SCHISM_ASSIGN_OR_RETURN(fields, r.Object((*components)[component], cpath));
    static const std::vector<std::string> kFields = {"max_weight", "max_weight_position",
                                                     "min_weight", "min_weight_distance"};
    for (auto it = fields->begin(); it != fields->end(); ++it) {
      if (std::find(kFields.begin(), kFields.end(), it.key()) == kFields.end()) {
        return r.Error(cpath + "." + it.key(),
                       "is not a field of Heretic's AbliterationParameters");
      }
    }
    std::map<std::string, double> value;
    for (const std::string& field : kFields) {
      if (!fields->contains(field)) return r.Error(cpath + "." + field, "is missing");
      SCHISM_ASSIGN_OR_RETURN(x, r.Number((*fields)[field], cpath + "." + field));
      value[field] = x;
    }
    const double max_weight = value["max_weight"], min_weight = value["min_weight"];
    if (component == kMlpComponent && max_weight < 0) {
      return r.Error(cpath + ".max_weight",
                     "is negative: schism clamps the MLP's max_weight to 0 (its sampling range "
                     "reaches below 0), Heretic applies it as is");
    }
    if (!(value["min_weight_distance"] > 0)) {
      return r.Error(cpath + ".min_weight_distance", "must be > 0 (Heretic divides by it)");
    }
    if (max_weight == 0 && min_weight != 0) {
      return r.Error(cpath + ".min_weight",
                     "is not 0 while max_weight is: schism's min_weight is a fraction of "
                     "max_weight");
    }
    out->params[prefix + "max_weight"] = max_weight;
    out->params[prefix + "max_weight_position"] = value["max_weight_position"];
    out->params[prefix + "min_weight"] =
        max_weight == 0 ? 0.0 : MinWeightFraction(min_weight, max_weight);
    out->params[prefix + "min_weight_distance"] = value["min_weight_distance"];
  }
  return absl::OkStatus();
}

absl::StatusOr<HereticMetrics> ReadMetrics(const Reader& r, const json& v) {
  SCHISM_ASSIGN_OR_RETURN(object, r.Object(v, "metrics"));
  HereticMetrics m;
  for (auto it = object->begin(); it != object->end(); ++it) {
    const std::string path = "metrics." + it.key();
    if (it.key() == "kl_divergence") {
      SCHISM_ASSIGN_OR_RETURN(x, r.Number(*it, path));
      if (x < 0) return r.Error(path, "must be >= 0");
      m.kl_divergence = x;
    } else if (it.key() == "refusals" || it.key() == "base_refusals" ||
               it.key() == "n_bad_prompts") {
      SCHISM_ASSIGN_OR_RETURN(x, r.Integer(*it, path, 0, INT64_MAX));
      (it.key() == "refusals"        ? m.refusals
       : it.key() == "base_refusals" ? m.base_refusals
                                     : m.n_bad_prompts) = x;
    } else {
      return r.Error(path, "is not one of Heretic's metrics");
    }
  }
  for (const char* key : {"kl_divergence", "refusals", "base_refusals", "n_bad_prompts"}) {
    if (!object->contains(key)) return r.Error(absl::StrCat("metrics.", key), "is missing");
  }
  return m;
}

absl::Status ReadHashes(const Reader& r, const json& v, HereticReproduction* out) {
  SCHISM_ASSIGN_OR_RETURN(object, r.Object(v, "hashes"));
  for (auto it = object->begin(); it != object->end(); ++it) {
    const std::string& name = it.key();
    const std::string path = "hashes." + name;
    // The name is joined to an output folder to find the file: keep it inside.
    if (name.empty() || name.front() == '/' || name == ".." || absl::StartsWith(name, "../") ||
        absl::StrContains(name, "/../") || absl::EndsWith(name, "/..") ||
        absl::StrContains(name, "\\")) {
      return r.Error(path, "must be a relative file name inside the model folder");
    }
    SCHISM_ASSIGN_OR_RETURN(hash, r.String(*it, path));
    if (hash.size() != 64 || !std::all_of(hash.begin(), hash.end(), absl::ascii_isxdigit)) {
      return r.Error(path, "must be a SHA-256 (64 hexadecimal digits)");
    }
    out->hashes[name] = absl::AsciiStrToLower(hash);
  }
  return absl::OkStatus();
}

absl::Status ReadEnvironment(const Reader& r, const json& v, HereticReproduction* out) {
  SCHISM_ASSIGN_OR_RETURN(object, r.Object(v, "environment"));
  if (object->contains("heretic")) {
    SCHISM_ASSIGN_OR_RETURN(heretic, r.Object((*object)["heretic"], "environment.heretic"));
    if (heretic->contains("version")) {
      SCHISM_ASSIGN_OR_RETURN(x, r.String((*heretic)["version"], "environment.heretic.version"));
      out->heretic_version = x;
    }
  }
  if (object->contains("pytorch_version")) {
    SCHISM_ASSIGN_OR_RETURN(x,
                            r.String((*object)["pytorch_version"], "environment.pytorch_version"));
    out->pytorch_version = x;
  }
  return absl::OkStatus();
}

#undef SCHISM_ASSIGN_OR_RETURN

}  // namespace

absl::StatusOr<HereticReproduction> ParseHereticReproduction(const std::string& text,
                                                             const std::string& where) {
  const Reader r(where);
  const json root = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": not valid JSON"));
  }
  if (!root.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": not a JSON object"));
  }
  HereticReproduction out;
  if (root.contains("schism_version")) {
    // The record `schism export` writes beside an export has the same file name.
    return absl::InvalidArgumentError(absl::StrCat(
        where,
        ": written by schism export (schism_version), not by Heretic; re-export that trial with "
        "`schism export --study DIR --trial N` or `--params` and `--directions`"));
  }
  if (!root.contains("version")) return r.Error("version", "is missing");
  const json& version = root["version"];
  if (!version.is_string()) {
    return r.Error("version",
                   absl::StrCat("must be a string (\"1\" or \"2\"), not ", version.dump()));
  }
  if (version == "1") {
    out.version = 1;
  } else if (version == "2") {
    out.version = 2;
  } else {
    return r.Error("version", absl::StrCat("\"", version.get<std::string>(),
                                           "\" is not supported (schism reads Heretic's "
                                           "reproduce.json versions \"1\" and \"2\")"));
  }
  out.hashes_checked_by_heretic = out.version == 2;
  for (const char* key : {"settings", "parameters"}) {
    if (!root.contains(key)) return r.Error(key, "is missing");
  }
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string& key = it.key();
    absl::Status status;
    if (key == "version") {
      continue;
    } else if (key == "timestamp") {
      auto x = r.String(*it, key);
      if (!x.ok()) return x.status();
      out.timestamp = *x;
    } else if (key == "system") {
      status = r.Object(*it, key).status();  // the original machine: informational
    } else if (key == "environment") {
      status = ReadEnvironment(r, *it, &out);
    } else if (key == "settings") {
      auto x = ReadSettings(r, *it);
      if (!x.ok()) return x.status();
      out.settings = *std::move(x);
    } else if (key == "parameters") {
      status = ReadParameters(r, *it, &out);
    } else if (key == "metrics") {
      auto x = ReadMetrics(r, *it);
      if (!x.ok()) return x.status();
      out.metrics = *x;
    } else if (key == "hashes") {
      status = ReadHashes(r, *it, &out);
    } else {
      return r.Error(key, absl::StrCat("is not a key of reproduce.json version \"",
                                       version.get<std::string>(), "\""));
    }
    if (!status.ok()) return status;
  }
  // What TrialParametersFromValues makes of them is what a trial with these values gets.
  if (auto p = TrialParametersFromValues(out.params); !p.ok()) {
    return absl::InternalError(absl::StrCat(where, ": ", p.status().message()));
  }
  return out;
}

absl::StatusOr<HereticReproduction> ReadHereticReproduction(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::NotFoundError(absl::StrCat(path, ": cannot read"));
  return ParseHereticReproduction(ss.str(), path);
}

}  // namespace schism::common
