// The coordinator's lock and condition variable: std::mutex underneath, with Clang's
// thread-safety annotations so ABSL_GUARDED_BY / ABSL_EXCLUSIVE_LOCKS_REQUIRED keep working.
//
// Why not absl::Mutex: the build links the distribution's libabsl, which is not compiled with
// -fsanitize=thread. ThreadSanitizer then sees none of absl::Mutex's happens-before edges and
// reports every guarded access as a race; std::mutex goes through pthreads, which TSan
// intercepts (scripts/tsan runs the coordinator's tests under it).
#ifndef SCHISM_COORDINATOR_MUTEX_H_
#define SCHISM_COORDINATOR_MUTEX_H_

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "absl/base/thread_annotations.h"

namespace schism::coordinator {

class ABSL_LOCKABLE Mutex {
 public:
  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }

 private:
  friend class CondVar;
  std::mutex mu_;
};

// Holds `mu` for its scope.
class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

class CondVar {
 public:
  void SignalAll() { cv_.notify_all(); }
  // With `mu` held: releases it until SignalAll or `timeout` (or a spurious wake-up), then
  // holds it again.
  void WaitWithTimeout(Mutex* mu, std::chrono::milliseconds timeout)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    cv_.wait_for(lock, timeout);
    lock.release();  // still held: the caller's MutexLock unlocks it
  }

 private:
  std::condition_variable cv_;
};

}  // namespace schism::coordinator

#endif  // SCHISM_COORDINATOR_MUTEX_H_
