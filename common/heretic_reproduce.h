// Heretic's reproduce.json, formats "1" (Heretic 1.3.0) and "2" (Heretic 1.4.0), read into
// schism's terms: the trial as schism's trial parameter values (common/trial_parameters.h) and the
// settings Heretic ran with, under Heretic's names and meanings (coordinator/study_config.cc reads
// the same keys from config.toml). Torch-free.
//
// The file is what heretic/utils.py generate_reproduce_json writes beside an uploaded model and
// heretic/main.py --reproduce reads; both versions share one layout:
//   version      "1" or "2" (a string)
//   timestamp    UTC time of the upload, e.g. "2026-06-12T08:30:00"
//   system       optional (a "full" upload): python, os, cpu and accelerators of the machine
//   environment  heretic {version, is_standard_pypi, metadata}, pytorch_version, requirements
//   settings     Settings.model_dump(): every Settings field not marked exclude=True, with the
//                Hub commits of the model and datasets filled in; version "1" holds Heretic
//                1.3.0's fields, which lack export_strategy
//   parameters   direction_index: a fractional layer index (a global direction) or null
//                (per-layer directions); abliteration_parameters: {component: {max_weight,
//                max_weight_position, min_weight, min_weight_distance}} with min_weight absolute
//                (main.py multiplies the sampled fraction by max_weight before storing it)
//   metrics      kl_divergence, refusals, base_refusals, n_bad_prompts
//   hashes       {file name: SHA-256} of the uploaded .safetensors files; Heretic 1.4.0 checks
//                them against its output only for version "2"
//
// Every key is read. A setting that changes the model or its scores is kept below (the caller
// must honour it); one whose value schism cannot honour is refused with an error naming it. Keys
// that cannot change the model or its scores are accepted and listed in `not_applied`:
//   device_map, max_memory, offload_outputs_to_cpu  where tensors live, not what they hold
//   n_trials, n_startup_trials                       the search that found the trial
//   seed       the search's seed; Heretic also reseeds torch.svd_lowrank with it for "full" row
//              normalization, whose rank-r approximation schism does not make (it is exact)
//   full_normalization_lora_rank when row_normalization is not "full" (unused then); with "full"
//              only Heretic's default 3 is accepted, as in config.toml, and schism's exact
//              normalization stands for Heretic's rank-3 approximation of it
//   chain_of_thought_skips when response_prefix is set (they only steer prefix detection)
//   and Settings fields Heretic never writes (exclude=True), which only an edited file holds:
//   max_batch_size, print_responses, print_residual_geometry, plot_residuals,
//   residual_plot_path/title/style, study_checkpoint_dir, benchmarks, collect_reproducibles,
//   reproduce, and a dataset's residual_plot_label/color.
// `system` and `environment` describe the machine and packages; they are read for the version
// strings below and otherwise only checked to be objects.
#ifndef SCHISM_COMMON_HERETIC_REPRODUCE_H_
#define SCHISM_COMMON_HERETIC_REPRODUCE_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/trial_parameters.h"

namespace schism::common {

// One of Heretic's DatasetSpecification tables (good_prompts, ...), as recorded.
struct HereticDatasetSpec {
  std::string dataset;                       // Hugging Face dataset ID, or a path on disk
  std::optional<std::string> commit;         // the Hub commit Heretic read (always in a file)
  std::optional<std::string> split;          // e.g. "train[:400]"; unset: the whole set
  std::optional<std::string> column;         // unset: a plain text file's one column
  std::string prefix;                        // prepended to each prompt
  std::string suffix;                        // appended to each prompt
  std::optional<std::string> system_prompt;  // unset: the global system_prompt
};

// The recorded Settings that change the model or its scores. Unset: the key was absent (or null
// where Heretic allows null), so Heretic 1.4.0's default applies, which is schism's default too.
// Heretic writes every key, so a file it wrote sets all of them but those it wrote as null.
struct HereticSettings {
  std::string model;                        // Hub model ID, or a path on disk
  std::optional<std::string> model_commit;  // the Hub commit Heretic loaded
  // Load dtypes tried in order: "auto", "float32", "bfloat16" or "float16" (others are refused);
  // which one loaded is not recorded.
  std::optional<std::vector<std::string>> dtypes;
  std::optional<std::string> quantization;  // "none" or "bnb_4bit" (schism: nf4)
  std::optional<int64_t> batch_size;        // 0: auto (a finished run records its choice)
  std::optional<int64_t> max_response_length;
  // Unset: detect the common response prefix. Set, even to "": use it as is (Heretic records
  // what it detected, "" when there was none, and does not detect again).
  std::optional<std::string> response_prefix;
  std::optional<double> kl_divergence_scale;   // Heretic 1.4's score only
  std::optional<double> kl_divergence_target;  // Heretic 1.4's score only
  std::optional<bool> orthogonalize_direction;
  std::optional<std::string> row_normalization;  // "none", "pre" or "full"
  std::optional<double> winsorization_quantile;  // in [0, 1]; 1: off
  // "merge" or "adapter": the export the hashes describe (version "2"; unset: Heretic asks).
  std::optional<std::string> export_strategy;
  // max_shard_size in bytes, as transformers' save_pretrained reads it ("5GB" = 5e9, "5GiB" =
  // 5 * 2^30, "5Gb" = 5e9 / 8, or an integer).
  std::optional<uint64_t> max_shard_bytes;
  std::optional<std::vector<std::string>> refusal_markers;
  std::optional<std::string> system_prompt;
  std::optional<HereticDatasetSpec> good_prompts;             // refusal directions, harmless
  std::optional<HereticDatasetSpec> bad_prompts;              // refusal directions, harmful
  std::optional<HereticDatasetSpec> good_evaluation_prompts;  // KL divergence
  std::optional<HereticDatasetSpec> bad_evaluation_prompts;   // refusal count
  // Keys present in the file that cannot change the model or its scores (see the top of this
  // file), as JSON paths ("settings.seed"), in file order.
  std::vector<std::string> not_applied;
};

// The scores Heretic measured for the trial.
struct HereticMetrics {
  double kl_divergence = 0;
  int64_t refusals = 0;       // among n_bad_prompts bad evaluation prompts
  int64_t base_refusals = 0;  // the original model's
  int64_t n_bad_prompts = 0;
};

struct HereticReproduction {
  int version = 0;  // the file format: 1 or 2
  std::optional<std::string> timestamp;
  std::optional<std::string> heretic_version;  // environment.heretic.version, e.g. "1.4.0"
  std::optional<std::string> pytorch_version;  // environment.pytorch_version
  HereticSettings settings;
  // The trial in schism's names, accepted by TrialParametersFromValues: direction_scope
  // ("global", or "per layer" for a null direction_index, whose direction_index is then 0 and
  // unused), direction_index, and per component (attn.o_proj, mlp.down_proj) max_weight,
  // max_weight_position, min_weight as a fraction of max_weight (Heretic's absolute value divided
  // by max_weight; chosen so that fraction * max_weight gives Heretic's value exactly) and
  // min_weight_distance. A component the file lacks (Heretic found no such module in its model,
  // so it left it alone) has max_weight 0: untouched.
  ParameterValues params;
  std::vector<std::string> absent_components;  // the components filled in so, by schism's name
  std::optional<HereticMetrics> metrics;
  // File name (relative, as uploaded) -> SHA-256, lower case.
  std::map<std::string, std::string> hashes;
  // Whether Heretic 1.4.0 compares the hashes with its output (version 2: yes; version 1 files,
  // written by Heretic 1.3.0, it reproduces without checking them).
  bool hashes_checked_by_heretic = false;
};

// Reads `path`. Errors are InvalidArgument (NotFound when the file cannot be read) and start with
// the path, then name the JSON path at fault: "reproduce.json: parameters.abliteration_parameters.
// attn.o_proj.max_weight must be a number". Refused:
//   - text that is not JSON, or not an object; a version other than the strings "1" and "2"
//     (named); a missing version, settings, settings.model, parameters, direction_index,
//     abliteration_parameters or component field, or a metrics table without all four metrics;
//   - a value of the wrong type or outside Heretic's range (Heretic's pydantic checks);
//   - keys the format does not have, at any level (Heretic 1.4.0 refuses unknown settings too);
//   - an unknown component (named), and abliteration_parameters naming none;
//   - values schism cannot honour, each named with the reason: dtypes other than auto, float32,
//     bfloat16 and float16; a negative mlp.down_proj max_weight (schism clamps it to 0, Heretic
//     applies it); a min_weight other than 0 with a zero max_weight (schism's is a fraction);
//     full_normalization_lora_rank other than 3 with "full" row normalization (schism's is exact;
//     as config.toml); chain_of_thought_skips without response_prefix (schism detects with
//     Heretic's built-in pairs only); evaluate_model (another mode of Heretic);
//   - hashes whose file name leaves the model folder, or that are not SHA-256 hex.
// The result's params always pass TrialParametersFromValues.
absl::StatusOr<HereticReproduction> ReadHereticReproduction(const std::string& path);

// The same for text already read; `where` names it in errors.
absl::StatusOr<HereticReproduction> ParseHereticReproduction(const std::string& text,
                                                             const std::string& where);

}  // namespace schism::common

#endif  // SCHISM_COMMON_HERETIC_REPRODUCE_H_
