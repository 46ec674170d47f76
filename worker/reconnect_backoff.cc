#include "worker/reconnect_backoff.h"

#include <algorithm>

namespace schism::worker {

ReconnectBackoff::ReconnectBackoff(std::chrono::milliseconds initial, std::chrono::milliseconds max,
                                   uint64_t seed)
    : initial_(std::max(initial, std::chrono::milliseconds(1))),
      max_(std::max(max, initial_)),
      ceiling_(initial_),
      rng_(seed) {}

std::chrono::milliseconds ReconnectBackoff::NextDelay() {
  const int64_t hi = ceiling_.count();
  std::uniform_int_distribution<int64_t> pick(hi / 2, hi);
  const std::chrono::milliseconds delay(pick(rng_));
  ceiling_ = std::min(max_, ceiling_ * 2);
  return delay;
}

}  // namespace schism::worker
