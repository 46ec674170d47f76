// A real OpenAI-compatible chat endpoint for the judge scorer's tests: llama-cpp-python's server
// (installed by scripts/setup) with the real model, on a free loopback port, killed when
// destroyed.
#ifndef SCHISM_TESTS_JUDGE_SERVER_H_
#define SCHISM_TESTS_JUDGE_SERVER_H_

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "tests/test_support.h"

extern char** environ;

namespace schism::testing_support {

class JudgeServer {
 public:
  JudgeServer() {
    log_ = MakeTempDir("judge_server") + "/server.log";
    // A port the kernel just handed out can be taken before the server binds it; the server then
    // exits and the next one is tried.
    for (int attempt = 0; attempt < 3 && !ready_; ++attempt) {
      port_ = FreeLoopbackPort();
      if (port_ > 0) Start();
    }
  }
  ~JudgeServer() { Kill(); }
  JudgeServer(const JudgeServer&) = delete;
  JudgeServer& operator=(const JudgeServer&) = delete;

  bool running() const { return ready_; }
  // The base URL a judge scorer takes: http://127.0.0.1:PORT/v1.
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }
  // What the server printed (why it did not start).
  std::string log() const { return ReadFile(log_); }

 private:
  void Start() {
    std::vector<std::string> args = {
        "python3",   "-m",     "llama_cpp.server",    "--model", RealModelPath(), "--host",
        "127.0.0.1", "--port", std::to_string(port_), "--n_ctx", "2048",          "--n_threads",
        "1"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log_.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                     0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    if (posix_spawnp(&pid_, "python3", &actions, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
    if (pid_ <= 0) return;
    // The server loads the model before it listens: an accepted connection means it is ready.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(180);
    while (std::chrono::steady_clock::now() < deadline) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      if (Accepts()) {
        ready_ = true;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    Kill();
  }
  bool Accepts() const {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(static_cast<uint16_t>(port_));
    const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
    ::close(fd);
    return ok;
  }
  void Kill() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    pid_ = -1;
    ready_ = false;
  }

  std::string log_;
  int port_ = -1;
  pid_t pid_ = -1;
  bool ready_ = false;
};

}  // namespace schism::testing_support

#endif  // SCHISM_TESTS_JUDGE_SERVER_H_
