// `schism tpe-replay`: feeds a recorded sequence of asks and tells to the C++ sampler and
// prints what it asks, so any Optuna run can be compared with it line by line.
//
// SPACE.json — the search space, in the order the objective suggests parameters:
//   {"directions": ["minimize", "minimize"],      // one per objective
//    "n_startup_trials": 10, "n_ei_candidates": 128, "seed": 42, "constant_liar": false,
//    "params": [
//      {"name": "direction_scope", "type": "categorical", "choices": ["global", "per layer"]},
//      {"name": "direction_index", "type": "float", "low": 12.4, "high": 27.9},
//      {"name": "lr", "type": "float", "low": 1e-5, "high": 1, "log": true},
//      {"name": "w", "type": "float", "low": 0, "high": 2, "step": 0.25},
//      {"name": "n", "type": "int", "low": 1, "high": 1000, "log": true, "step": 1}]}
// TOLD.jsonl — one event per line, in the order they happened:
//   {"ask": 0}                                          trial 0 is asked (numbers count up)
//   {"tell": 0, "state": "COMPLETE", "values": [0.4, 1.2]}
//   {"tell": 1, "state": "PRUNED"}   {"tell": 2, "state": "FAIL"}
// Output: one line per ask, `T<number> <params>`, params as JSON with sorted keys and floats
// printed as Python's repr (the format of Optuna's recorded runs in the test vectors).
#ifndef SCHISM_COORDINATOR_TPE_REPLAY_H_
#define SCHISM_COORDINATOR_TPE_REPLAY_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/tpe/tpe_sampler.h"

namespace schism::tpe {

struct ReplaySpace {
  SearchSpace suggest_order;
  TpeOptions options;
};

// Errors name the offending key or parameter.
absl::StatusOr<ReplaySpace> ParseReplaySpace(const std::string& json_text);

// Runs the events; returns one output line per ask. Errors name the line number.
absl::StatusOr<std::vector<std::string>> ReplayTold(const ReplaySpace& space,
                                                    const std::string& told_jsonl);

// `{"name": value, ...}` with sorted keys, Python-style floats.
std::string FormatParams(const SearchSpace& space, const std::map<std::string, double>& params);

}  // namespace schism::tpe

#endif  // SCHISM_COORDINATOR_TPE_REPLAY_H_
