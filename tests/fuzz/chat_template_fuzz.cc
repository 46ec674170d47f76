// A chat template (Jinja) from a model's tokenizer config: parsed, then rendered with a short
// conversation, as every prompt is.
#include <cstdint>
#include <string>

#include "common/template/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string source(reinterpret_cast<const char*>(data), size);
  auto chat = schism::jinja::ChatTemplate::Create(source, "<s>", "</s>");
  if (!chat.ok()) return 0;
  (void)chat->Render({{"system", "You are a helpful assistant."}, {"user", "Hi \xff there"}},
                     /*add_generation_prompt=*/true);
  (void)chat->RenderJson(R"([{"role": "user", "content": [{"type": "text", "text": "x"}]}])",
                         /*add_generation_prompt=*/false, R"({"tools": [{"name": "f"}]})");
  return 0;
}
