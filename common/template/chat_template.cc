#include "common/template/chat_template.h"

#include <nlohmann/json.hpp>

#include "absl/status/status.h"

namespace schism::jinja {

absl::StatusOr<ChatTemplate> ChatTemplate::Create(const std::string& source, std::string bos_token,
                                                  std::string eos_token) {
  if (source.empty()) return absl::NotFoundError("the model has no chat template");
  auto parsed = Template::Parse(source);
  if (!parsed.ok()) return parsed.status();
  ChatTemplate t;
  t.template_ = std::move(*parsed);
  t.bos_token_ = std::move(bos_token);
  t.eos_token_ = std::move(eos_token);
  return t;
}

absl::StatusOr<std::string> ChatTemplate::Render(const std::vector<ChatMessage>& messages,
                                                 bool add_generation_prompt) const {
  // Straight into the template's values, not through JSON text: a message is bytes from a prompt
  // file, and JSON serialization would throw on bytes that are not UTF-8.
  ValueList list;
  for (const ChatMessage& m : messages) {
    ValueDict message;
    message.Set("role", Value(m.role));
    message.Set("content", Value(m.content));
    list.push_back(Value(std::move(message)));
  }
  return RenderContext(Value(std::move(list)), add_generation_prompt,
                       nlohmann::ordered_json::object());
}

absl::StatusOr<std::string> ChatTemplate::RenderJson(const std::string& messages_json,
                                                     bool add_generation_prompt,
                                                     const std::string& extra_context_json) const {
  auto messages = nlohmann::ordered_json::parse(messages_json, nullptr, false);
  auto extra = nlohmann::ordered_json::parse(extra_context_json, nullptr, false);
  if (messages.is_discarded() || !messages.is_array()) {
    return absl::InvalidArgumentError("chat messages must be a JSON array");
  }
  if (extra.is_discarded() || !extra.is_object()) {
    return absl::InvalidArgumentError("extra chat-template context must be a JSON object");
  }
  return RenderContext(Value::FromJson(messages), add_generation_prompt, extra);
}

absl::StatusOr<std::string> ChatTemplate::RenderContext(Value messages, bool add_generation_prompt,
                                                        const nlohmann::ordered_json& extra) const {
  // What apply_chat_template passes: tools/documents default to None, plus the special tokens.
  ValueDict context;
  context.Set("messages", std::move(messages));
  context.Set("add_generation_prompt", Value(add_generation_prompt));
  context.Set("tools", Value(None{}));
  context.Set("documents", Value(None{}));
  context.Set("bos_token", Value(bos_token_));
  context.Set("eos_token", Value(eos_token_));
  for (auto it = extra.begin(); it != extra.end(); ++it) {
    context.Set(it.key(), Value::FromJson(it.value()));
  }
  return template_->Render(Value(std::move(context)));
}

}  // namespace schism::jinja
