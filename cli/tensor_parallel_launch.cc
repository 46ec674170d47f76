#include "cli/tensor_parallel_launch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace schism::cli {
namespace {

constexpr int kMaxRanks = 64;

std::optional<int> EnvInt(const char* name) {
  const char* value = std::getenv(name);
  int parsed = 0;
  if (value == nullptr || !absl::SimpleAtoi(value, &parsed)) return std::nullopt;
  return parsed;
}

absl::Status ParseMaster(const std::string& text, model::TensorParallelOptions* options) {
  const size_t colon = text.rfind(':');
  int port = 0;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(text.substr(colon + 1), &port) || port <= 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tp-master: expected HOST:PORT, got \"", text, "\""));
  }
  options->master_host = text.substr(0, colon);
  options->master_port = port;
  return absl::OkStatus();
}

absl::StatusOr<int> FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::UnavailableError("tensor parallel: no socket for a rendezvous port");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
                  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  close(fd);
  if (!ok) return absl::UnavailableError("tensor parallel: no free loopback port");
  return static_cast<int>(ntohs(address.sin_port));
}

}  // namespace

absl::StatusOr<TensorParallelLaunch> PlanTensorParallel(const Args& args) {
  TensorParallelLaunch launch;
  auto world = args.GetInt("tensor-parallel");
  auto rank = args.GetInt("tp-rank");
  if (!world.ok()) return world.status();
  if (!rank.ok()) return rank.status();
  const long n = world->value_or(1);
  if (n < 1 || n > kMaxRanks) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tensor-parallel must be in [1, ", kMaxRanks, "], got ", n));
  }
  launch.options.world_size = static_cast<int>(n);
  const auto master = args.Get("tp-master");
  if (n == 1) {
    if (rank->has_value() || master)
      return absl::InvalidArgumentError("--tp-rank and --tp-master need --tensor-parallel N > 1");
    return launch;
  }
  if (master) {
    if (auto s = ParseMaster(*master, &launch.options); !s.ok()) return s;
  }
  if (rank->has_value()) {
    if (**rank < 0 || **rank >= n) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tp-rank ", **rank, " is outside [0, ", n, ")"));
    }
    if (!master) return absl::InvalidArgumentError("--tp-rank needs --tp-master HOST:PORT");
    launch.options.rank = static_cast<int>(**rank);  // on exactly --device
    return launch;
  }
  if (master) {  // one srun task per rank: the rank is the task's
    const auto task = EnvInt("SLURM_PROCID"), tasks = EnvInt("SLURM_NTASKS");
    if (!task || !tasks) {
      return absl::InvalidArgumentError(
          "--tp-master without --tp-rank takes the rank from srun (SLURM_PROCID); outside srun, "
          "pass --tp-rank");
    }
    if (*tasks != n) {
      return absl::InvalidArgumentError(absl::StrCat("--tensor-parallel ", n, " under srun needs ",
                                                     n, " tasks in the step, not ", *tasks));
    }
    launch.options.rank = *task;
    // The task's GPU: the one it sees when srun binds one per task (--gpus-per-task=1), else
    // the SLURM_LOCALID-th of the node's.
    const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
    const bool one_visible = visible != nullptr && *visible && std::strchr(visible, ',') == nullptr;
    launch.local_rank = one_visible ? 0 : EnvInt("SLURM_LOCALID").value_or(0);
    return launch;
  }
  launch.spawn_local_ranks = true;
  return launch;
}

c10::Device RankDevice(const c10::Device& device, const TensorParallelLaunch& launch) {
  if (!device.is_cuda() || launch.options.world_size == 1) return device;
  const int base = device.has_index() ? device.index() : 0;
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(base + launch.local_rank));
}

absl::StatusOr<std::vector<pid_t>> StartLocalRanks(const Args& args, TensorParallelLaunch* launch,
                                                   const c10::Device& device,
                                                   int threads_per_rank) {
  auto port = FreeLoopbackPort();
  if (!port.ok()) return port.status();
  launch->options.master_host = "127.0.0.1";
  launch->options.master_port = *port;
  std::vector<pid_t> started;
  for (int r = 1; r < launch->options.world_size; ++r) {
    std::vector<std::string> argv = {"schism", args.command().name};
    argv.insert(argv.end(), args.argv().begin(), args.argv().end());
    argv.insert(argv.end(),
                {"--tp-rank", std::to_string(r), "--tp-master", absl::StrCat("127.0.0.1:", *port)});
    if (device.is_cuda()) {  // the flag given last wins: rank r on the r-th GPU from --device
      const int base = device.has_index() ? device.index() : 0;
      argv.insert(argv.end(), {"--device", absl::StrCat("cuda:", base + r)});
    }
    if (threads_per_rank > 0 && !args.Has("threads"))
      argv.insert(argv.end(), {"--threads", std::to_string(threads_per_rank)});
    std::vector<char*> c_argv;
    for (std::string& a : argv) c_argv.push_back(a.data());
    c_argv.push_back(nullptr);
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) {
      ReapLocalRanks(started, 0);
      return absl::UnavailableError("tensor parallel: fork failed");
    }
    if (pid == 0) {
      // A rank outlives no rank 0: it gets SIGTERM when this process ends, however it ends.
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != parent) _exit(1);
      execv("/proc/self/exe", c_argv.data());
      _exit(127);
    }
    started.push_back(pid);
  }
  return started;
}

void ReapLocalRanks(const std::vector<pid_t>& ranks, int grace_seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(grace_seconds);
  std::vector<pid_t> left = ranks;
  while (!left.empty()) {
    std::erase_if(left, [](pid_t pid) { return waitpid(pid, nullptr, WNOHANG) != 0; });
    if (left.empty() || std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (pid_t pid : left) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
}

}  // namespace schism::cli
