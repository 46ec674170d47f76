// A model's chat template: renders a conversation to the prompt text the model was trained on,
// with the variables transformers' apply_chat_template provides.
#ifndef SCHISM_COMMON_TEMPLATE_CHAT_TEMPLATE_H_
#define SCHISM_COMMON_TEMPLATE_CHAT_TEMPLATE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/template/jinja_template.h"

namespace schism::jinja {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

class ChatTemplate {
 public:
  // `source` is the Jinja text from tokenizer_config.json or GGUF tokenizer.chat_template.
  static absl::StatusOr<ChatTemplate> Create(const std::string& source, std::string bos_token,
                                             std::string eos_token);

  absl::StatusOr<std::string> Render(const std::vector<ChatMessage>& messages,
                                     bool add_generation_prompt) const;

  // The general form: `messages` as a JSON array (tool calls, content parts) and extra
  // variables (e.g. "tools") merged into the context.
  absl::StatusOr<std::string> RenderJson(const std::string& messages_json,
                                         bool add_generation_prompt,
                                         const std::string& extra_context_json = "{}") const;

 private:
  absl::StatusOr<std::string> RenderContext(Value messages, bool add_generation_prompt,
                                            const nlohmann::ordered_json& extra) const;

  std::shared_ptr<const Template> template_;
  std::string bos_token_;
  std::string eos_token_;
};

}  // namespace schism::jinja

#endif  // SCHISM_COMMON_TEMPLATE_CHAT_TEMPLATE_H_
