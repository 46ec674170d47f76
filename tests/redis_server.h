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
  explicit RedisServer(int base_port_offset = 0, bool appendonly = false)
      : base_port_offset_(base_port_offset), appendonly_(appendonly) {
    port_ = 46000 + (::getpid() * 7 + base_port_offset_) % 2000;
    dir_ = MakeTempDir("redis");
    Start();
  }
  ~RedisServer() { Kill(); }
  // SIGKILL, as a crash would.
  void Kill() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    pid_ = -1;
  }
  // (Re)starts the server on the same port and data directory; waits until it answers.
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
    for (int i = 0; i < 100 && pid_ > 0; ++i) {
      if (coordinator::RedisStore::Connect(url()).ok()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  // Each test uses its own database so one test's studies never show up in another's replay.
  std::string url(int db = 0) const {
    return "redis://127.0.0.1:" + std::to_string(port_) + "/" + std::to_string(db);
  }
  bool running() const { return pid_ > 0; }

 private:
  int base_port_offset_;
  bool appendonly_;
  pid_t pid_ = -1;
  int port_;
  std::string dir_;
};

}  // namespace schism::testing_support

#endif  // SCHISM_TESTS_REDIS_SERVER_H_
