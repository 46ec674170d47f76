// The tpe-replay file formats, driven by the recorded Optuna runs.
#include "coordinator/tpe/replay.h"

#include <gtest/gtest.h>

#include "tests/coordinator/tpe/optuna_runs.h"

namespace schism::tpe {
namespace {

// SPACE.json equivalent of a SearchSpace.
std::string SpaceJson(const SearchSpace& space, uint32_t seed, int n_startup, bool liar) {
  nlohmann::json params = nlohmann::json::array();
  for (const auto& [name, d] : space) {
    nlohmann::json p = {{"name", name}};
    if (d.kind == DistributionKind::kCategorical) {
      p["type"] = "categorical";
      p["choices"] = d.choices;
    } else {
      p["type"] = d.kind == DistributionKind::kInt ? "int" : "float";
      if (d.kind == DistributionKind::kInt) {
        p["low"] = static_cast<int64_t>(d.low);
        p["high"] = static_cast<int64_t>(d.high);
        p["step"] = static_cast<int64_t>(*d.step);
      } else {
        p["low"] = d.low;
        p["high"] = d.high;
        if (d.step) p["step"] = *d.step;
      }
      p["log"] = d.log;
    }
    params.push_back(p);
  }
  return nlohmann::json({{"directions", {"minimize", "minimize"}},
                         {"n_startup_trials", n_startup},
                         {"n_ei_candidates", 128},
                         {"seed", seed},
                         {"constant_liar", liar},
                         {"params", params}})
      .dump();
}

std::string TellLine(const RecordedTrial& r) {
  nlohmann::json tell = {{"tell", r.number}};
  tell["state"] = r.state == TrialState::kPruned ? "PRUNED"
                  : r.state == TrialState::kFail ? "FAIL"
                                                 : "COMPLETE";
  if (r.state == TrialState::kComplete) tell["values"] = r.values;
  return tell.dump() + "\n";
}

void ExpectLinesMatch(const std::vector<std::string>& lines,
                      const std::vector<RecordedTrial>& recorded) {
  ASSERT_EQ(lines.size(), recorded.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string prefix = "T" + std::to_string(recorded[i].number) + " ";
    ASSERT_EQ(lines[i].rfind(prefix, 0), 0u) << lines[i];
    auto got = nlohmann::json::parse(lines[i].substr(prefix.size()));
    ASSERT_EQ(got.size(), recorded[i].params.size());
    for (auto it = recorded[i].params.begin(); it != recorded[i].params.end(); ++it) {
      if (it->is_number_float()) {
        EXPECT_NEAR(got[it.key()].get<double>(), it->get<double>(),
                    1e-9 * std::max(1.0, std::fabs(it->get<double>())))
            << lines[i];
      } else {
        EXPECT_EQ(got[it.key()], *it) << lines[i];
      }
    }
  }
}

TEST(TpeReplay, RunCFromFilesMatchesOptuna) {
  const auto recorded = ReadRun("C");
  std::string told;
  for (const auto& r : recorded)
    told += "{\"ask\": " + std::to_string(r.number) + "}\n" + TellLine(r);
  auto space = ParseReplaySpace(SpaceJson(MixedSpace(), 3, 6, false));
  ASSERT_TRUE(space.ok()) << space.status();
  auto lines = ReplayTold(*space, told);
  ASSERT_TRUE(lines.ok()) << lines.status();
  ExpectLinesMatch(*lines, recorded);
}

TEST(TpeReplay, RunBWithInterleavedAsksAndTellsMatchesOptuna) {
  const auto recorded = ReadRun("B");
  std::string told;
  for (size_t round = 0; round < 8; ++round) {
    for (size_t w = 0; w < 4; ++w) told += "{\"ask\": " + std::to_string(round * 4 + w) + "}\n";
    for (size_t w = 0; w < 4; ++w) told += TellLine(recorded[round * 4 + w]);
  }
  auto space = ParseReplaySpace(SpaceJson(HereticSpace(), 7, 8, true));
  ASSERT_TRUE(space.ok()) << space.status();
  auto lines = ReplayTold(*space, told);
  ASSERT_TRUE(lines.ok()) << lines.status();
  ExpectLinesMatch(*lines, recorded);
}

TEST(TpeReplay, BadInputNamesTheProblem) {
  EXPECT_NE(ParseReplaySpace("{}").status().message().find("params"), std::string::npos);
  auto bad_type = ParseReplaySpace(R"({"params": [{"name": "x", "type": "complex"}]})");
  EXPECT_NE(bad_type.status().message().find("param x"), std::string::npos);
  auto bad_range =
      ParseReplaySpace(R"({"params": [{"name": "x", "type": "float", "low": 2, "high": 1}]})");
  EXPECT_NE(bad_range.status().message().find("param x"), std::string::npos);
  auto space =
      ParseReplaySpace(R"({"params": [{"name": "x", "type": "float", "low": 0, "high": 1}]})");
  ASSERT_TRUE(space.ok());
  EXPECT_NE(ReplayTold(*space, "{\"ask\": 1}\n").status().message().find("line 1"),
            std::string::npos);
  EXPECT_NE(
      ReplayTold(*space, "{\"ask\": 0}\n{\"tell\": 5}\n").status().message().find("never asked"),
      std::string::npos);
  EXPECT_NE(ReplayTold(*space, "{\"ask\": 0}\n{\"tell\": 0, \"values\": [1, 2]}\n")
                .status()
                .message()
                .find("1 numbers"),
            std::string::npos);
  EXPECT_NE(ReplayTold(*space, "garbage\n").status().message().find("not a JSON object"),
            std::string::npos);
}

}  // namespace
}  // namespace schism::tpe
