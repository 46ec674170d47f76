// `schism export` as a user runs it: from a study folder of the embedded store, with bad
// destinations, and streaming a generated model of more than 1 GiB under a memory bound.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/byte_size.h"
#include "common/formats/safetensors.h"
#include "coordinator/journal_store.h"
#include "coordinator/study_manager.h"
#include "tests/test_support.h"
#include "worker/runtime/directions.h"

namespace schism {
namespace {

namespace fs = std::filesystem;
using testing_support::MakeTempDir;
using testing_support::ReadFile;
using testing_support::RealModelPath;
using testing_support::RunOracle;

struct ChildRun {
  int exit_code = -1;
  std::string output;    // stdout and stderr together
  long max_rss_kib = 0;  // of the child alone (wait4)
};

// Runs the schism binary with `args` (split on spaces) and measures its peak resident set.
ChildRun RunSchism(const std::string& args, const std::string& log_path) {
  std::vector<std::string> parts = absl::StrSplit(args, ' ', absl::SkipEmpty());
  std::vector<char*> argv = {const_cast<char*>(SCHISM_BINARY)};
  for (std::string& p : parts) argv.push_back(p.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    FILE* log = std::fopen(log_path.c_str(), "w");
    dup2(fileno(log), 1);
    dup2(fileno(log), 2);
    execv(SCHISM_BINARY, argv.data());
    _exit(127);
  }
  ChildRun run;
  int status = 0;
  struct rusage usage {};
  wait4(pid, &status, 0, &usage);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  run.max_rss_kib = usage.ru_maxrss;
  run.output = ReadFile(log_path);
  return run;
}

std::string TrialJson(double index) {
  return absl::StrCat(R"({"direction_scope": "global", "direction_index": )", index, R"(,
      "attn.o_proj.max_weight": 1.0, "attn.o_proj.max_weight_position": 16, "attn.o_proj.min_weight": 0.5,
      "attn.o_proj.min_weight_distance": 40, "mlp.down_proj.max_weight": 0.8,
      "mlp.down_proj.max_weight_position": 16, "mlp.down_proj.min_weight": 0.5,
      "mlp.down_proj.min_weight_distance": 40})");
}

TEST(ExportCommand, StreamingAGigabyteModelKeepsPeakMemoryNearTheLargestTensor) {
  const std::string dir = MakeTempDir("export_big");
  const std::string source = dir + "/source";
  fs::create_directories(source);
  // Llama layout, 34 layers of 32 MiB in bfloat16: 1.1 GiB, largest tensor 4M elements.
  const int64_t H = 1024, I = 4096, V = 4096, L = 34;
  std::ofstream(source + "/config.json") << nlohmann::json{
      {"architectures", {"LlamaForCausalLM"}},
      {"hidden_size", H},
      {"intermediate_size", I},
      {"num_hidden_layers", L},
      {"num_attention_heads", 16},
      {"num_key_value_heads", 16},
      {"rms_norm_eps", 1e-5},
      {"vocab_size", V},
      {"tie_word_embeddings", false},
      {"torch_dtype", "bfloat16"}}.dump();
  // The source and the export are 1.1 GiB each on disk.
  const uint64_t free_bytes = fs::space(dir).available;
  ASSERT_GE(free_bytes, 3ull << 30)
      << dir << " has " << (free_bytes >> 20) << " MiB free; this test writes 2.3 GiB there";
  uint64_t model_bytes = 0, largest_elements = 0;
  {
    formats::SafetensorsWriter writer(source, 400ull << 20);  // sharded source too
    at::manual_seed(1);
    auto add = [&](const std::string& name, std::vector<int64_t> shape) {
      const at::Tensor t = (at::randn(shape) * 0.02).to(at::kBFloat16).contiguous();
      const absl::Status added =
          writer.Add(name, formats::SafetensorsDtype::kBF16, shape, t.data_ptr(), t.numel() * 2);
      ASSERT_TRUE(added.ok()) << added << " (" << (fs::space(dir).available >> 20) << " MiB free)";
      model_bytes += t.numel() * 2;
      largest_elements = std::max<uint64_t>(largest_elements, t.numel());
    };
    add("model.embed_tokens.weight", {V, H});
    for (int64_t i = 0; i < L; ++i) {
      const std::string p = absl::StrCat("model.layers.", i, ".");
      add(p + "input_layernorm.weight", {H});
      add(p + "post_attention_layernorm.weight", {H});
      for (const char* m : {"q_proj", "k_proj", "v_proj", "o_proj"})
        add(p + "self_attn." + m + ".weight", {H, H});
      add(p + "mlp.gate_proj.weight", {I, H});
      add(p + "mlp.up_proj.weight", {I, H});
      add(p + "mlp.down_proj.weight", {H, I});
    }
    add("model.norm.weight", {H});
    add("lm_head.weight", {V, H});
    ASSERT_FALSE(HasFatalFailure());
    ASSERT_TRUE(writer.Finish().ok());
  }
  ASSERT_GE(model_bytes, 1ull << 30);
  at::manual_seed(2);
  at::Tensor directions = at::randn({L + 1, H});
  directions = directions / directions.norm(2, {1}, true);
  ASSERT_TRUE(model::SaveDirections(dir + "/directions.bin", directions).ok());
  std::ofstream(dir + "/trial.json") << TrialJson(10.0);

  const ChildRun run = RunSchism(
      absl::StrCat("export --model ", source, " --params ", dir, "/trial.json --directions ", dir,
                   "/directions.bin --dest ", dir, "/out --json"),
      dir + "/log.txt");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const auto report = nlohmann::json::parse(run.output.substr(run.output.find('{')));
  EXPECT_EQ(report["adapted_tensors"].get<int>(), 2 * L);
  // Bound: the largest tensor a few times over (float32 copy, float64 for the adapter, the cast
  // output) plus the fixed cost of the process, measured: the peak RSS of `schism --help` (the
  // torch wheel's CPU and CUDA libraries, ~480 MiB here), with 64 MiB for the allocator.
  const ChildRun idle = RunSchism("--help", dir + "/help.txt");
  ASSERT_EQ(idle.exit_code, 0) << idle.output;
  const double fixed_mib = idle.max_rss_kib / 1024.0;
  const double largest_f32_mib = largest_elements * 4.0 / (1 << 20);
  const double peak_mib = run.max_rss_kib / 1024.0;
  const double bound_mib = 6 * largest_f32_mib + fixed_mib + 64;
  std::cout << "export of a " << model_bytes / double(1 << 20) << " MiB model (largest tensor "
            << largest_f32_mib << " MiB as float32): peak RSS " << peak_mib
            << " MiB (process alone " << fixed_mib << " MiB, bound " << bound_mib << " MiB), "
            << report["seconds"].get<double>() << " s\n";
  EXPECT_LT(peak_mib, bound_mib);
  EXPECT_LT((peak_mib - fixed_mib) * (1 << 20), model_bytes / 4.0);  // far from holding the model
  // The export holds every tensor, in the source dtype.
  auto out = formats::SafetensorsModel::Open(dir + "/out");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)->TensorNames().size(), 3 + 9 * L);
  EXPECT_EQ((*out)->Find("model.layers.33.mlp.down_proj.weight")->dtype,
            formats::SafetensorsDtype::kBF16);
  fs::remove_all(dir);
}

// A finished study in the embedded store, built through the coordinator's state machine with
// scores a worker would report (a GPU-less double of the evaluation).
std::string StudyWithOneTrial(const std::string& store_dir, const std::string& model,
                              const at::Tensor& directions) {
  coordinator::JournalStore store(store_dir);
  coordinator::StudyManager manager(&store);
  v1::StudySpec spec;
  spec.set_model(model);
  spec.set_n_trials(1);
  spec.set_n_startup_trials(1);
  spec.set_row_normalization("pre");
  auto id = manager.Submit(spec);
  EXPECT_TRUE(id.ok()) << id.status();
  const std::string worker = manager.RegisterWorker(v1::RegisterRequest());
  v1::AcquireWorkRequest acquire;
  acquire.set_worker_id(worker);
  acquire.set_capacity(1);
  auto prepare = manager.Acquire(acquire);
  v1::ReportResultRequest prepared;
  prepared.set_worker_id(worker);
  prepared.set_lease_id(prepare->lease_id());
  prepared.set_artifact(model::SerializeDirections(directions));
  prepared.set_num_layers(static_cast<int>(directions.size(0)) - 1);
  prepared.set_baseline_refusals(9);
  EXPECT_TRUE(manager.Report(prepared).ok());
  auto evaluate = manager.Acquire(acquire);
  EXPECT_TRUE(evaluate->has_evaluate());
  v1::ReportResultRequest scored;
  scored.set_worker_id(worker);
  scored.set_lease_id(evaluate->lease_id());
  auto* result = scored.add_results();
  result->set_number(0);
  result->mutable_scores()->set_refusals(4);
  result->mutable_scores()->set_refusal_prompts(20);
  result->mutable_scores()->set_kl_divergence(0.0123);
  EXPECT_TRUE(manager.Report(scored).ok());
  return *id;
}

TEST(ExportCommand, FromAStudyFolderWithProvenanceAndConfinedDestinations) {
  const std::string dir = MakeTempDir("export_study");
  std::string log;
  ASSERT_EQ(RunOracle("model_fixtures.py", {"tiny", "llama-tied", dir, RealModelPath()}, &log), 0)
      << log;
  at::manual_seed(4);
  at::Tensor directions = at::randn({4, 64});
  directions = directions / directions.norm(2, {1}, true);
  const std::string id = StudyWithOneTrial(dir + "/store", dir + "/hf", directions);
  fs::create_directories(dir + "/exports");

  const std::string common = absl::StrCat("export --model ", dir, "/hf --study ", dir, "/store/",
                                          id, " --output-root ", dir, "/exports");
  const ChildRun ok =
      RunSchism(common + " --trial 0 --dest team/model --format both", dir + "/log1.txt");
  ASSERT_EQ(ok.exit_code, 0) << ok.output;
  const std::string out = dir + "/exports/team/model";
  std::ifstream in(out + "/reproduce.json");
  const auto reproduce = nlohmann::json::parse(in);
  EXPECT_EQ(reproduce["study"]["id"].get<std::string>(), id);
  EXPECT_EQ(reproduce["trial"]["number"].get<int>(), 0);
  EXPECT_EQ(reproduce["trial"]["scores"]["refusals"].get<int>(), 4);
  EXPECT_EQ(reproduce["trial"]["baseline_refusals"].get<int>(), 9);
  EXPECT_EQ(reproduce["export"]["row_normalization"].get<std::string>(),
            "pre");  // the study's setting
  EXPECT_EQ(reproduce["study"]["spec"]["model"].get<std::string>(), dir + "/hf");
  const std::string card = ReadFile(out + "/README.md");
  EXPECT_NE(card.find("| This model | 4/20 | 0.0123 |"), std::string::npos) << card;
  EXPECT_NE(card.find("| Original | 9/20 |"), std::string::npos) << card;
  EXPECT_TRUE(fs::exists(out + "/adapter/adapter_model.safetensors"));

  const ChildRun again = RunSchism(common + " --trial 0 --dest team/model", dir + "/log2.txt");
  EXPECT_EQ(again.exit_code, 2);
  EXPECT_NE(again.output.find("--overwrite"), std::string::npos) << again.output;
  const ChildRun escape =
      RunSchism(common + " --trial 0 --dest ../../elsewhere", dir + "/log3.txt");
  EXPECT_EQ(escape.exit_code, 2);
  EXPECT_NE(escape.output.find("outside the output root"), std::string::npos) << escape.output;
  const ChildRun no_trial = RunSchism(common + " --trial 5 --dest x", dir + "/log4.txt");
  EXPECT_EQ(no_trial.exit_code, 2);
  EXPECT_NE(no_trial.output.find("no completed trial 5"), std::string::npos) << no_trial.output;
  const ChildRun bad_format =
      RunSchism(common + " --trial 0 --dest y --format gguf", dir + "/log5.txt");
  EXPECT_EQ(bad_format.exit_code, 2);
  EXPECT_NE(bad_format.output.find("merged, adapter or both"), std::string::npos)
      << bad_format.output;
  EXPECT_FALSE(fs::exists(dir + "/exports/x"));
  EXPECT_FALSE(fs::exists(dir + "/exports/y"));
}

TEST(ExportCommand, ByteSizesSpellLikeHuggingFace) {
  EXPECT_EQ(*common::ParseByteSize("5GB"), 5000000000ull);
  EXPECT_EQ(*common::ParseByteSize("500MiB"), 500ull << 20);
  EXPECT_EQ(*common::ParseByteSize("1048576"), 1048576ull);
  EXPECT_EQ(*common::ParseByteSize("1.5gb"), 1500000000ull);
  EXPECT_FALSE(common::ParseByteSize("five GB").ok());
  EXPECT_FALSE(common::ParseByteSize("5XB").ok());
  EXPECT_FALSE(common::ParseByteSize("0").ok());
}

}  // namespace
}  // namespace schism
