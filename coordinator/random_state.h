// NumPy's legacy `RandomState` (MT19937), reproduced bit for bit so the TPE sampler draws exactly
// what Optuna draws for the same seed (docs/algorithm.md#random-numbers).
#ifndef SCHISM_COORDINATOR_RANDOM_STATE_H_
#define SCHISM_COORDINATOR_RANDOM_STATE_H_

#include <cstdint>
#include <random>

namespace schism::coordinator {

class RandomState {
 public:
  // `init_genrand(seed)`, which is what std::mt19937's seeding does too.
  explicit RandomState(uint32_t seed) : engine_(seed) {}

  uint32_t NextUint32() { return static_cast<uint32_t>(engine_()); }

  // `random_sample()`: 53 random bits from two 32-bit outputs, in [0, 1).
  double NextDouble() {
    const uint64_t a = NextUint32() >> 5;
    const uint64_t b = NextUint32() >> 6;
    return (static_cast<double>(a) * 67108864.0 + static_cast<double>(b)) / 9007199254740992.0;
  }

  // `uniform(low, high)`.
  double Uniform(double low, double high) { return low + (high - low) * NextDouble(); }

 private:
  std::mt19937 engine_;
};

}  // namespace schism::coordinator

#endif  // SCHISM_COORDINATOR_RANDOM_STATE_H_
