// A real redis-server for tests, started on a free loopback port and killed when destroyed.
#ifndef SCHISM_TESTS_REDIS_SERVER_H_
#define SCHISM_TESTS_REDIS_SERVER_H_

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "coordinator/redis_store.h"
#include "tests/test_support.h"

extern char** environ;

namespace schism::testing_support {

class RedisServer {
 public:
  // `appendonly`: persistence as in production (AOF, fsync on every write), so Kill + Start
  // loses nothing that was acknowledged.
  explicit RedisServer(bool appendonly = false) : appendonly_(appendonly) {
    dir_ = MakeTempDir("redis");
    // A port the kernel just handed out can still be taken by someone else before redis binds
    // it; redis then exits, and the next free port is tried.
    for (int attempt = 0; attempt < 5 && !ready_; ++attempt) {
      port_ = FreeLoopbackPort();
      if (port_ > 0) Start();
    }
  }
  ~RedisServer() { Kill(); }
  // SIGKILL, as a crash would.
  void Kill() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    pid_ = -1;
    ready_ = false;
  }
  // (Re)starts the server on the same port and data directory; waits until it answers, or
  // until it exits (its log, redis.log in the data directory, says why).
  void Start() {
    std::vector<std::string> args = {"redis-server",
                                     "--port",
                                     std::to_string(port_),
                                     "--save",
                                     "",
                                     "--appendonly",
                                     appendonly_ ? "yes" : "no",
                                     "--appendfsync",
                                     "always",
                                     "--dir",
                                     dir_,
                                     "--bind",
                                     "127.0.0.1"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, (dir_ + "/redis.log").c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);  // never hold the test's own output open
    if (posix_spawnp(&pid_, "redis-server", &actions, nullptr, argv.data(), environ) != 0)
      pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
    for (int i = 0; i < 200 && pid_ > 0; ++i) {
      if (coordinator::RedisStore::Connect(url()).ok()) {
        ready_ = true;
        return;
      }
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;  // it exited: the port was taken, or redis-server refused its arguments
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  // Each test uses its own database so one test's studies never show up in another's replay.
  std::string url(int db = 0) const {
    return "redis://127.0.0.1:" + std::to_string(port_) + "/" + std::to_string(db);
  }
  // True once the server answered and until Kill.
  bool running() const { return ready_; }
  std::string log_path() const { return dir_ + "/redis.log"; }

 private:
  bool appendonly_;
  bool ready_ = false;
  pid_t pid_ = -1;
  int port_ = -1;
  std::string dir_;
};

}  // namespace schism::testing_support

#endif  // SCHISM_TESTS_REDIS_SERVER_H_
