// Delays between a worker's attempts to reach an absent coordinator: exponential growth, a cap,
// and "equal" jitter (a random delay in the upper half of the current ceiling) so a restarted
// coordinator is not hit by every worker at the same instant, while no worker retries at once.
#ifndef SCHISM_WORKER_RECONNECT_BACKOFF_H_
#define SCHISM_WORKER_RECONNECT_BACKOFF_H_

#include <chrono>
#include <cstdint>
#include <random>

namespace schism::worker {

class ReconnectBackoff {
 public:
  ReconnectBackoff(std::chrono::milliseconds initial, std::chrono::milliseconds max, uint64_t seed);

  // The delay before the next attempt: uniform in [ceiling/2, ceiling], where the ceiling doubles
  // after every failure up to `max`.
  std::chrono::milliseconds NextDelay();

  // Call after a successful attempt: the next failure starts from `initial` again.
  void Reset() { ceiling_ = initial_; }

 private:
  std::chrono::milliseconds initial_;
  std::chrono::milliseconds max_;
  std::chrono::milliseconds ceiling_;
  std::mt19937_64 rng_;
};

}  // namespace schism::worker

#endif  // SCHISM_WORKER_RECONNECT_BACKOFF_H_
