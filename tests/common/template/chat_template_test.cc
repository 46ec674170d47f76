// The Jinja interpreter against Python's jinja2 (configured as transformers configures it).
#include "common/template/chat_template.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>

#include "tests/test_support.h"

namespace schism::jinja {
namespace {

TEST(ChatTemplate, RendersExactlyAsJinja2ForRealAndFamilyTemplates) {
  const std::string out = testing_support::MakeTempDir("chat_template") + "/cases.json";
  std::string log;
  ASSERT_EQ(testing_support::RunOracle("chat_template_oracle.py",
                                       {testing_support::RealModelPath(), out}, &log),
            0)
      << log;
  auto cases = nlohmann::ordered_json::parse(testing_support::ReadFile(out));
  ASSERT_GE(cases.size(), 100u);
  size_t raised = 0;
  std::set<std::string> families;
  for (const auto& c : cases) {
    const std::string name = c["name"].get<std::string>();
    families.insert(name.substr(0, name.find('/')));
    auto tmpl = ChatTemplate::Create(c["template"].get<std::string>(), "<s>", "</s>");
    ASSERT_TRUE(tmpl.ok()) << name << ": " << tmpl.status();
    auto rendered = tmpl->RenderJson(c["messages"].dump(), c["add_generation_prompt"].get<bool>(),
                                     c["extra"].dump());
    if (c["ok"].get<bool>()) {
      ASSERT_TRUE(rendered.ok()) << name << ": " << rendered.status();
      EXPECT_EQ(*rendered, c["output"].get<std::string>()) << name;
    } else {
      ++raised;
      ASSERT_FALSE(rendered.ok()) << name << " should raise: " << c["output"];
      EXPECT_NE(rendered.status().message().find(c["output"].get<std::string>()), std::string::npos)
          << name << ": " << rendered.status();
    }
  }
  EXPECT_GT(raised, 0u);
  for (const char* family : {"smollm2", "qwen25", "llama3", "mistral", "gemma2", "gemma3"}) {
    EXPECT_TRUE(families.count(family)) << family;
  }
}

// Found by chat_template_fuzz: a prompt whose bytes are not UTF-8 (a prompt file is bytes) made
// Render throw from JSON serialization. It renders, byte for byte; the tokenizer is byte-level.
TEST(ChatTemplate, AMessageThatIsNotUtf8RendersItsBytes) {
  auto tmpl = ChatTemplate::Create(
      "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}", "<s>", "</s>");
  ASSERT_TRUE(tmpl.ok()) << tmpl.status();
  auto text = tmpl->Render({{"user", "Hi \xff\xfe there \xe2\x96"}}, false);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, "<|user|>Hi \xff\xfe there \xe2\x96\n");
}

TEST(ChatTemplate, SyntaxErrorsNameTheLine) {
  auto bad = ChatTemplate::Create("line one\n{% for x in %}\n{% endfor %}", "", "");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("line 2"), std::string::npos) << bad.status();
  auto unclosed = ChatTemplate::Create("{% if true %}never closed", "", "");
  ASSERT_FALSE(unclosed.ok());
  EXPECT_NE(unclosed.status().message().find("endif"), std::string::npos) << unclosed.status();
  auto unknown = ChatTemplate::Create("{{ x | frobnicate }}", "", "");
  ASSERT_TRUE(unknown.ok());
  auto rendered = unknown->Render({{"user", "hi"}}, true);
  ASSERT_FALSE(rendered.ok());
  EXPECT_NE(rendered.status().message().find("frobnicate"), std::string::npos);
}

// A chat template arrives with the model file, so a hostile one must end in an error, not a
// stack overflow, a hang or an allocation of everything: each of these used to do one of those.
TEST(ChatTemplate, HostileTemplatesEndInErrorsWithinBudgets) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "nested deeper than 100"},
      {"{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}",
       "nested deeper than 256"},
      {"{{ " +
           [] {
             std::string s;
             for (int i = 0; i < 5000; ++i) s += "not ";
             return s;
           }() +
           "x }}",
       "nested deeper"},
      {std::string(3000, '{'), ""},  // lexes as text or fails: either way no crash
      {"{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
       "more than 1000000 steps"},
      {"{{ range(10000000000) | length }}", "range() of more than"},
      {"{{ 'abc' * 100000000 }}", "string repeated past"},
      {"{% for a in range(500000) %}{{ 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' }}{% "
       "endfor %}",
       "output grew past"},
  };
  for (const auto& [source, expected] : cases) {
    auto t = ChatTemplate::Create(source, "", "");
    absl::Status status = t.status();
    if (t.ok()) status = t->Render({{"user", "hi"}}, true).status();
    if (expected.empty()) continue;
    ASSERT_FALSE(status.ok()) << source.substr(0, 80);
    EXPECT_NE(status.message().find(expected), std::string::npos)
        << source.substr(0, 80) << ": " << status;
  }
}

}  // namespace
}  // namespace schism::jinja
