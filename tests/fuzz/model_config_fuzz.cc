// A Hugging Face config.json (ModelConfigFromHfJson): any bytes give a config that keeps
// Validate's promises or an error; no crash, no undefined conversion, no runaway loop. The reader
// is torch-free but lives with the runtime (worker/runtime/model_config.cc, compiled in here).
#include <cstdint>
#include <cstdlib>

#include "tests/fuzz/fuzz_input.h"
#include "worker/runtime/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto c =
      schism::model::ModelConfigFromHfJson(schism::fuzz::WriteInput(data, size, "config.json"));
  if (!c.ok()) return 0;
  // What the runtime relies on once a config is accepted.
  if (c->num_layers <= 0 || c->num_heads <= 0 || c->num_kv_heads <= 0 ||
      c->num_heads % c->num_kv_heads != 0 || c->head_dim <= 0 || c->head_dim % 2 != 0 ||
      c->hidden_size <= 0 || c->vocab_size <= 0 ||
      (!c->sliding_layers.empty() && static_cast<int>(c->sliding_layers.size()) != c->num_layers) ||
      c->RotaryDim() <= 0 || c->RotaryDim() > c->head_dim)
    std::abort();
  return 0;
}
