// Memory of a 4-bit worker (packed NF4) against a bfloat16 one, on a generated Llama-layout model
// of 1.35 GiB in bfloat16 whose linear layers are 99.4% of its weights. Each configuration loads
// the model in a fresh child process and runs one forward pass; the parent reports the child's
// peak RSS, and the same minus the peak of a child that loads nothing (the process and its
// libraries: the CUDA torch wheel alone maps ~480 MiB).
//   build/benchmarks/nf4_memory_bench [--model HF_DIR]   (default: generated under /tmp)
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <ATen/ATen.h>

#include "worker/runtime/generator.h"
#include "worker/runtime/model_loader.h"

namespace {

namespace fs = std::filesystem;
using schism::model::LoadOptions;
using schism::model::Quantization;

// In the child: load (unless `what` is "none") and run one 8-token forward pass.
int Child(const std::string& model, const std::string& what) {
  if (what == "none") return 0;
  LoadOptions options;
  options.dtype = c10::kBFloat16;
  if (what == "nf4") options.quantization = Quantization::kNf4;
  auto loaded = schism::model::LoadModel(model, options);
  if (!loaded.ok()) {
    std::fprintf(stderr, "%s\n", std::string(loaded.status().message()).c_str());
    return 1;
  }
  const std::vector<schism::model::TokenIds> prompt = {{1, 17, 33, 99, 250, 511, 1024, 2000}};
  const auto out = schism::model::PromptForward(*loaded->transformer, prompt, 0);
  return out.last_logits.isfinite().all().item<bool>() ? 0 : 2;
}

// Peak RSS (MiB) of a child running `what`, or -1.
double PeakRssOfChild(const char* self, const std::string& model, const std::string& what) {
  const pid_t pid = fork();
  if (pid == 0) {
    execl(self, self, "--child", model.c_str(), what.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  struct rusage usage {};
  if (wait4(pid, &status, 0, &usage) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return -1;
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 4 && std::string(argv[1]) == "--child") return Child(argv[2], argv[3]);
  std::string model;
  if (argc == 3 && std::string(argv[1]) == "--model") model = argv[2];
  if (model.empty()) {
    model = (fs::temp_directory_path() / "schism_nf4_memory_model").string();
    if (!fs::exists(fs::path(model) / "model.safetensors")) {
      const std::string source =
          std::string(SCHISM_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
      const std::string command = "python3 " + std::string(SCHISM_SOURCE_DIR) +
                                  "/tests/oracles/model_fixtures.py large " + model + " " + source;
      std::printf("generating %s\n", model.c_str());
      if (std::system(command.c_str()) != 0) {
        std::fprintf(stderr, "model generation failed: %s\n", command.c_str());
        return 1;
      }
    }
  }
  const double base = PeakRssOfChild(argv[0], model, "none");
  const double bf16 = PeakRssOfChild(argv[0], model, "bf16");
  const double nf4 = PeakRssOfChild(argv[0], model, "nf4");
  if (base < 0 || bf16 < 0 || nf4 < 0) {
    std::fprintf(stderr, "a child failed\n");
    return 1;
  }
  std::printf("peak RSS, MiB      total    above the bare process (%.0f MiB)\n", base);
  std::printf("  bfloat16     %8.0f    %8.0f\n", bf16, bf16 - base);
  std::printf("  nf4 (packed) %8.0f    %8.0f\n", nf4, nf4 - base);
  std::printf("nf4 / bf16: %.3fx total, %.3fx above the bare process\n", nf4 / bf16,
              (nf4 - base) / (bf16 - base));
  return 0;
}
