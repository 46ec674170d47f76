#include "common/tokenizer/bpe_tokenizer.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "common/env.h"
#include "common/formats/gguf_reader.h"
#include "tests/gguf_writer.h"
#include "tests/test_support.h"

namespace schism::tokenizer {
namespace {

struct OracleRun {
  std::vector<std::string> strings;
  std::vector<std::vector<int32_t>> ids;
  std::string tokenizer_json;
};

// Runs the `tokenizers` oracle once for the whole suite.
const OracleRun& Oracle() {
  static const OracleRun* run = [] {
    auto* r = new OracleRun;
    const std::string dir = testing_support::MakeTempDir("tokenizer_oracle");
    std::string log;
    const int rc = testing_support::RunOracle(
        "tokenizer_oracle.py", {testing_support::RealModelPath(), common::DefaultDataDir(), dir},
        &log);
    EXPECT_EQ(rc, 0) << log;
    if (rc != 0) return r;
    r->strings = nlohmann::json::parse(testing_support::ReadFile(dir + "/strings.json"))
                     .get<std::vector<std::string>>();
    r->ids = nlohmann::json::parse(testing_support::ReadFile(dir + "/ids.json"))
                 .get<std::vector<std::vector<int32_t>>>();
    r->tokenizer_json = dir + "/tokenizer.json";
    return r;
  }();
  return *run;
}

std::unique_ptr<BpeTokenizer> RealModelTokenizer() {
  auto gguf = formats::GgufReader::Open(testing_support::RealModelPath());
  EXPECT_TRUE(gguf.ok()) << gguf.status();
  auto spec = TokenizerSpecFromGguf(**gguf);
  EXPECT_TRUE(spec.ok()) << spec.status();
  auto tok = BpeTokenizer::Create(std::move(*spec));
  EXPECT_TRUE(tok.ok()) << tok.status();
  return std::move(*tok);
}

void ExpectMatchesOracle(const BpeTokenizer& tok, const char* source) {
  const OracleRun& oracle = Oracle();
  ASSERT_GE(oracle.strings.size(), 2000u);
  size_t mismatches = 0;
  for (size_t i = 0; i < oracle.strings.size(); ++i) {
    if (tok.Encode(oracle.strings[i]) != oracle.ids[i]) {
      if (++mismatches <= 5)
        ADD_FAILURE() << source << ": ids differ for \"" << oracle.strings[i] << "\"";
    }
  }
  EXPECT_EQ(mismatches, 0u) << source << " of " << oracle.strings.size() << " strings";
}

TEST(BpeTokenizer, GgufVocabularyMatchesHuggingFaceTokenizersOnAllTestStrings) {
  ExpectMatchesOracle(*RealModelTokenizer(), "GGUF");
}

TEST(BpeTokenizer, TokenizerJsonMatchesHuggingFaceTokenizersOnAllTestStrings) {
  auto spec = TokenizerSpecFromJson(Oracle().tokenizer_json);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->pre_tokenizer, PreTokenizer::kGpt2Digits);
  auto tok = BpeTokenizer::Create(std::move(*spec));
  ASSERT_TRUE(tok.ok()) << tok.status();
  ExpectMatchesOracle(**tok, "tokenizer.json");
}

TEST(BpeTokenizer, DecodeInvertsEncodeExactly) {
  auto tok = RealModelTokenizer();
  for (const std::string& s : Oracle().strings) EXPECT_EQ(tok->Decode(tok->Encode(s)), s);
}

TEST(BpeTokenizer, SpecialTokensAreMatchedVerbatim) {
  auto tok = RealModelTokenizer();
  auto ids = tok->Encode("<|im_start|>user\nhi<|im_end|>");
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids.front(), *tok->TokenId("<|im_start|>"));
  EXPECT_EQ(ids.back(), *tok->TokenId("<|im_end|>"));
  EXPECT_EQ(tok->spec().eos_id, tok->TokenId("<|im_end|>"));
}

TEST(StreamingDecoder, NeverEmitsHalfACharacter) {
  auto tok = RealModelTokenizer();
  const std::string text = "Emoji 👨‍👩‍👧 and 日本語 and café 🇺🇸!";
  StreamingDecoder stream(*tok);
  std::string assembled;
  for (int32_t id : tok->Encode(text)) {
    std::string piece = stream.Push(id);
    // Every emitted piece must be complete UTF-8 on its own.
    for (size_t i = 0; i < piece.size();) {
      const uint8_t b = static_cast<uint8_t>(piece[i]);
      const size_t len = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : 4;
      ASSERT_LE(i + len, piece.size()) << "split character in \"" << piece << "\"";
      i += len;
    }
    assembled += piece;
  }
  assembled += stream.Flush();
  EXPECT_EQ(assembled, text);
}

TEST(BpeTokenizer, SentencePieceWithByteFallbackMatchesHuggingFaceTokenizers) {
  const std::string dir = testing_support::MakeTempDir("tokenizer_spm");
  std::string log;
  ASSERT_EQ(testing_support::RunOracle("tokenizer_oracle.py",
                                       {"--sentencepiece", common::DefaultDataDir(), dir}, &log),
            0)
      << log;
  auto spec = TokenizerSpecFromJson(dir + "/tokenizer.json");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->kind, BpeKind::kSentencePiece);
  auto tok = BpeTokenizer::Create(std::move(*spec));
  ASSERT_TRUE(tok.ok()) << tok.status();
  const auto strings = nlohmann::json::parse(testing_support::ReadFile(dir + "/strings.json"))
                           .get<std::vector<std::string>>();
  const auto ids = nlohmann::json::parse(testing_support::ReadFile(dir + "/ids.json"))
                       .get<std::vector<std::vector<int32_t>>>();
  ASSERT_GE(strings.size(), 2000u);
  size_t mismatches = 0, round_trips = 0;
  for (size_t i = 0; i < strings.size(); ++i) {
    const auto got = (*tok)->Encode(strings[i]);
    if (got != ids[i] && ++mismatches <= 5)
      ADD_FAILURE() << "ids differ for \"" << strings[i] << "\"";
    if (strings[i].find('<') == std::string::npos) {  // added-token texts do not round-trip
      EXPECT_EQ((*tok)->Decode(got), strings[i]);
      ++round_trips;
    }
  }
  EXPECT_EQ(mismatches, 0u);
  EXPECT_GT(round_trips, 1000u);
}

TEST(BpeTokenizer, SentencePieceScoresMergeHighestScoringPairFirst) {
  TokenizerSpec spec;
  spec.kind = BpeKind::kSentencePiece;
  spec.tokens = {"<unk>", "\u2581", "a", "b", "c", "ab", "bc", "\u2581a", "<0x64>"};
  spec.scores = {0, 0, 0, 0, 0, -1.0f, -0.5f, -2.0f, 0};
  spec.unk_id = 0;
  auto tok = BpeTokenizer::Create(spec);
  ASSERT_TRUE(tok.ok()) << tok.status();
  // "▁abc": bc (-0.5) beats ab (-1) and ▁a (-2); then ▁a; "▁abc" is not a token.
  EXPECT_EQ((*tok)->Encode("abc"), (std::vector<int32_t>{7, 6}));
  // "d" is unknown and falls back to its byte token; "e" has none and becomes <unk>.
  EXPECT_EQ((*tok)->Encode("ade"), (std::vector<int32_t>{7, 8, 0}));
  EXPECT_EQ((*tok)->Decode({7, 6}), "abc");
}

TEST(TokenizerSpec, RejectsUnsupportedTokenizerKind) {
  const std::string path = testing_support::MakeTempDir("tok_bad") + "/tokenizer.json";
  std::ofstream(path) << R"({"model": {"type": "Unigram", "vocab": []}})";
  auto spec = TokenizerSpecFromJson(path);
  ASSERT_FALSE(spec.ok());
  EXPECT_NE(spec.status().message().find("BPE"), std::string::npos);
}

// Hostile tokenizer.json files: each is refused with an error naming the file, never a crash
// (a string id used to escape as an nlohmann type_error; an id of 2^40 used to be an allocation).
TEST(TokenizerSpec, MalformedTokenizerJsonIsRefusedNotACrash) {
  const std::string dir = testing_support::MakeTempDir("tok_hostile");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"model": {"type": "BPE", "vocab": {"a": "0", "b": 1}, "merges": []}})",
       "malformed field"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1099511627776}, "merges": []}})",
       "far beyond"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": [7]}})", "merges"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "added_tokens": [{"id": "x", "content": "<s>"}]})",
       "malformed field"},
      {R"({"model": {"type": 3, "vocab": {"a": 0}}})", "tokenizer.json"},
      {R"([1, 2, 3])", "not a JSON object"},
      {R"({})", "BPE"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": {"x": 1}}})",
       "model.merges must be a list"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}}, "added_tokens": 5})",
       "added_tokens must be a list"},
  };
  for (const auto& [text, expected] : cases) {
    const std::string path = dir + "/tokenizer.json";
    std::ofstream(path) << text;
    auto spec = TokenizerSpecFromJson(path);
    ASSERT_FALSE(spec.ok()) << text;
    EXPECT_NE(spec.status().message().find(expected), std::string::npos)
        << text << ": " << spec.status();
    EXPECT_NE(spec.status().message().find("tokenizer.json"), std::string::npos) << spec.status();
  }
  TokenizerSpec out_of_range;
  out_of_range.tokens = {"a", "b"};
  out_of_range.bos_id = 5;
  auto tok = BpeTokenizer::Create(out_of_range);
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(tok.status().message().find("bos token id 5 is outside the vocabulary of 2"),
            std::string::npos)
      << tok.status();
}

// A GGUF's special-token ids beyond int32 are refused by name, not narrowed into a valid id
// (2^32 + 1 used to become token 1).
TEST(TokenizerSpecFromGguf, SpecialTokenIdsBeyondInt32AreRefusedByName) {
  const std::string dir = testing_support::MakeTempDir("gguf_token_ids");
  auto spec_with = [&](int64_t eos) {
    auto path = testing_support::GgufWriter()
                    .String("general.architecture", "llama")
                    .String("tokenizer.ggml.model", "gpt2")
                    .StringArray("tokenizer.ggml.tokens", {"a", "b", "ab"})
                    .StringArray("tokenizer.ggml.merges", {"a b"})
                    .Int64("tokenizer.ggml.eos_token_id", eos)
                    .Write(dir + "/t.gguf");
    auto gguf = formats::GgufReader::Open(path);
    EXPECT_TRUE(gguf.ok()) << gguf.status();
    return TokenizerSpecFromGguf(**gguf);
  };
  auto ok = spec_with(1);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->eos_id, 1);
  EXPECT_FALSE(ok->bos_id.has_value());
  auto wide = spec_with((int64_t{1} << 32) + 1);
  ASSERT_FALSE(wide.ok());
  EXPECT_NE(
      wide.status().message().find("tokenizer.ggml.eos_token_id = 4294967297 is not a token id"),
      std::string::npos)
      << wide.status();
}

}  // namespace
}  // namespace schism::tokenizer
