// Study config files: Heretic's keys, [cluster], and the export defaults.
#include "coordinator/study_config.h"

#include <gtest/gtest.h>

namespace schism::coordinator {
namespace {

TEST(StudyConfig, ReadsHereticKeysClusterAndExportDefaults) {
  auto spec = StudySpecFromToml(R"(
model = "m.gguf"
quantization = "nf4"
n_trials = 50
max_shard_size = "2GB"
[export]
format = "both"
dtype = "bfloat16"
[cluster]
trials_per_worker = 4
)", "study.toml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->model(), "m.gguf");
  EXPECT_EQ(spec->n_trials(), 50);
  EXPECT_EQ(spec->max_shard_bytes(), 2000000000ull);
  EXPECT_EQ(spec->export_format(), "both");
  EXPECT_EQ(spec->export_dtype(), "bfloat16");
  EXPECT_EQ(spec->trials_per_lease(), 4);
  EXPECT_TRUE(spec->orthogonalize_direction());
  EXPECT_EQ(StudySpecFromToml("max_shard_size = 1048576", "s.toml")->max_shard_bytes(), 1048576ull);
}

TEST(StudyConfig, BadValuesNameTheKey) {
  for (const auto& [text, key] : std::vector<std::pair<std::string, std::string>>{
           {"max_shard_size = \"lots\"", "max_shard_size"},
           {"max_shard_size = 0", "max_shard_size"},
           {"[export]\nformat = \"gguf\"", "export.format"},
           {"[export]\ndtype = \"int8\"", "export.dtype"},
           {"[export]\nlocation = \"x\"", "export.location"},
           {"n_trials = \"many\"", "n_trials"},
           {"colour = 1", "colour"}}) {
    auto spec = StudySpecFromToml(text, "study.toml");
    ASSERT_FALSE(spec.ok()) << text;
    EXPECT_NE(spec.status().message().find(key), std::string::npos) << spec.status();
    EXPECT_NE(spec.status().message().find("study.toml"), std::string::npos) << spec.status();
  }
  auto broken = StudySpecFromToml("n_trials = = 3", "broken.toml");
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.status().message().find("broken.toml:1"), std::string::npos) << broken.status();
}

}  // namespace
}  // namespace schism::coordinator
