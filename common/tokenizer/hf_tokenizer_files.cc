#include "common/tokenizer/hf_tokenizer_files.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace schism::tokenizer {
namespace {

namespace fs = std::filesystem;

absl::StatusOr<nlohmann::json> ReadJson(const fs::path& path, bool required) {
  std::ifstream in(path);
  if (!in) {
    if (required) return absl::NotFoundError(absl::StrCat(path.string(), ": missing"));
    return nlohmann::json::object();
  }
  auto j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": invalid JSON"));
  return j;
}

// tokenizer_config.json writes special tokens as strings or as {"content": ...} objects (null or
// absent: none); anything else is an error naming the key.
absl::StatusOr<std::string> TokenText(const nlohmann::json& config, const char* key,
                                      const std::string& folder) {
  if (!config.contains(key) || config[key].is_null()) return std::string();
  const nlohmann::json& j = config[key];
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string())
    return j["content"].get<std::string>();
  return absl::InvalidArgumentError(absl::StrCat(folder, "/tokenizer_config.json: ", key,
                                                 " must be a token's text or {\"content\": text}"));
}

}  // namespace

absl::StatusOr<HfTokenizerFiles> ReadHfTokenizerFiles(const std::string& folder,
                                                      TokenizerSpec* spec) {
  auto tok_config = ReadJson(fs::path(folder) / "tokenizer_config.json", true);
  if (!tok_config.ok()) return tok_config.status();
  auto gen_config = ReadJson(fs::path(folder) / "generation_config.json", false);
  if (!gen_config.ok()) return gen_config.status();

  HfTokenizerFiles files;
  const nlohmann::json& tc = *tok_config;
  auto bos = TokenText(tc, "bos_token", folder);
  if (!bos.ok()) return bos.status();
  auto eos = TokenText(tc, "eos_token", folder);
  if (!eos.ok()) return eos.status();
  auto pad = TokenText(tc, "pad_token", folder);
  if (!pad.ok()) return pad.status();
  files.bos_token = *bos;
  files.eos_token = *eos;
  if (tc.contains("chat_template") && tc["chat_template"].is_string()) {
    files.chat_template = tc["chat_template"].get<std::string>();
  } else if (fs::exists(fs::path(folder) / "chat_template.jinja")) {
    std::ifstream in(fs::path(folder) / "chat_template.jinja");
    files.chat_template.assign(std::istreambuf_iterator<char>(in), {});
  } else if (fs::exists(fs::path(folder) / "chat_template.json")) {
    // Vision-language checkpoints keep it beside the processor: {"chat_template": "..."}.
    auto tmpl = ReadJson(fs::path(folder) / "chat_template.json", true);
    if (!tmpl.ok()) return tmpl.status();
    if (!tmpl->contains("chat_template") || !(*tmpl)["chat_template"].is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(folder, "/chat_template.json: chat_template must be a string"));
    }
    files.chat_template = (*tmpl)["chat_template"].get<std::string>();
  }
  if (tc.contains("add_bos_token") && !tc["add_bos_token"].is_boolean() &&
      !tc["add_bos_token"].is_null()) {
    return absl::InvalidArgumentError(
        absl::StrCat(folder, "/tokenizer_config.json: add_bos_token must be true or false"));
  }
  spec->add_bos = tc.contains("add_bos_token") && tc["add_bos_token"].is_boolean() &&
                  tc["add_bos_token"].get<bool>();
  // tokenizer_config.json names the special tokens by text; the spec wants their ids.
  auto id_of = [&](const std::string& text) -> std::optional<int32_t> {
    if (text.empty()) return std::nullopt;
    auto it = std::find(spec->tokens.begin(), spec->tokens.end(), text);
    if (it == spec->tokens.end()) return std::nullopt;
    return static_cast<int32_t>(it - spec->tokens.begin());
  };
  if (auto id = id_of(files.bos_token)) spec->bos_id = *id;
  if (auto id = id_of(files.eos_token)) spec->eos_id = *id;
  if (auto id = id_of(*pad)) spec->pad_id = *id;
  if (gen_config->contains("eos_token_id")) {
    const auto& e = (*gen_config)["eos_token_id"];
    const auto bad = absl::InvalidArgumentError(absl::StrCat(
        folder, "/generation_config.json: eos_token_id must be a token id or a list of token ids"));
    const int64_t vocab = static_cast<int64_t>(spec->tokens.size());
    auto add = [&](const nlohmann::json& id) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= vocab)
        return false;
      files.eos_ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
      return true;
    };
    if (e.is_array()) {
      for (const auto& id : e) {
        if (!add(id)) return bad;
      }
    } else if (!e.is_null() && !add(e)) {
      return bad;
    }
  }
  return files;
}

}  // namespace schism::tokenizer
