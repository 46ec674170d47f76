// Reading the recorded Optuna 4.8.0 runs of ../shared/spec/tpe_vectors (spec/tpe.md Appendix A)
// and the search spaces they used.
#ifndef SCHISM_TESTS_COORDINATOR_TPE_OPTUNA_RUNS_H_
#define SCHISM_TESTS_COORDINATOR_TPE_OPTUNA_RUNS_H_

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "coordinator/tpe/tpe_sampler.h"

namespace schism::tpe {

inline std::string VectorsDir() {
  return std::string(SCHISM_SOURCE_DIR) + "/../shared/spec/tpe_vectors";
}

struct RecordedTrial {
  int64_t number;
  nlohmann::json params;  // external values
  std::vector<double> values;
  TrialState state = TrialState::kComplete;
};

inline std::vector<RecordedTrial> ReadRun(const std::string& name) {
  std::ifstream in(VectorsDir() + "/" + name + ".txt");
  EXPECT_TRUE(in) << name;
  std::vector<RecordedTrial> trials;
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("LOG", 0) == 0) break;
    if (line.empty() || line[0] != 'T') continue;
    RecordedTrial t;
    std::istringstream ss(line.substr(1));
    ss >> t.number;
    const size_t params_begin = line.find('{');
    const size_t params_end = line.find("} ", params_begin) + 1;
    t.params = nlohmann::json::parse(line.substr(params_begin, params_end - params_begin));
    std::string rest = line.substr(params_end + 1);
    const size_t space = rest[0] == '[' ? rest.find(']') + 1 : rest.find(' ');
    auto values = nlohmann::json::parse(rest.substr(0, space));
    if (values.is_array()) t.values = values.get<std::vector<double>>();
    if (space != std::string::npos && space < rest.size()) {
      const std::string state = rest.substr(space + 1);
      t.state = state == "PRUNED" ? TrialState::kPruned
                : state == "FAIL" ? TrialState::kFail
                                  : TrialState::kComplete;
    }
    trials.push_back(std::move(t));
  }
  return trials;
}

// The Heretic-like space of runs A and B (L = 31), in suggest order.
inline SearchSpace HereticSpace() {
  const double L = 31;
  SearchSpace s;
  s.emplace_back("direction_scope", *Distribution::Categorical({"global", "per layer"}));
  s.emplace_back("direction_index", *Distribution::Float(0.4 * L, 0.9 * L));
  for (std::string c : {"attn.o_proj", "mlp.down_proj"}) {
    s.emplace_back(c + ".max_weight",
                   *Distribution::Float(c == "mlp.down_proj" ? -0.25 : 0.8, 1.5));
    s.emplace_back(c + ".max_weight_position", *Distribution::Float(0.6 * L, 1.0 * L));
    s.emplace_back(c + ".min_weight", *Distribution::Float(0.0, 1.0));
    s.emplace_back(c + ".min_weight_distance", *Distribution::Float(1.0, std::max(0.6 * L, 1.0)));
  }
  return s;
}

inline SearchSpace MixedSpace() {
  SearchSpace s;
  s.emplace_back("a_int", *Distribution::Int(1, 10));
  s.emplace_back("b_intlog", *Distribution::Int(1, 1000, /*log=*/true));
  s.emplace_back("c_flog", *Distribution::Float(1e-4, 1, /*log=*/true));
  s.emplace_back("d_fstep", *Distribution::Float(0, 2, false, 0.25));
  s.emplace_back("e_intstep", *Distribution::Int(0, 20, false, 5));
  s.emplace_back("f_cat3", *Distribution::Categorical({"x", "y", "z"}));
  return s;
}

}  // namespace schism::tpe

#endif  // SCHISM_TESTS_COORDINATOR_TPE_OPTUNA_RUNS_H_
