#include "coordinator/journal_record.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"

namespace schism::coordinator::journal {
namespace {

std::vector<Record> OneOfEach() {
  v1::StudySpec spec;
  spec.set_model("/models/m.gguf");
  spec.set_n_trials(7);
  spec.add_refusal_markers("sorry");
  v1::TrialScores scores;
  scores.set_refusals(3);
  scores.set_refusal_prompts(100);
  scores.set_kl_divergence(0.125);
  v1::ExportJob job;
  job.set_export_id("x1");
  job.set_state(v1::EXPORT_STATE_RUNNING);
  job.mutable_request()->set_study_id("s1");
  job.mutable_request()->set_trial(4);
  return {Submitted{spec, 3},
          Prepared{30, 41, "<think></think>"},
          PrepareFailed{"no model"},
          Asked{2, {{"direction_scope", 1.0}, {"attn.o_proj.max_weight", 1.25}}},
          Leased{2, 1, "w1", "l1"},
          Completed{2, scores},
          Returned{2, false, "lease expired", "w1", LeaseCause::kExpired, ""},
          Returned{2, true, "worker reported: oom", "w2", LeaseCause::kWorkerFailed,
                   "3 workers reported a failure"},
          Returned{5, false, "its worker stopped", "w3", LeaseCause::kRestart, ""},
          StudyFailed{"too many"},
          Finished{},
          Cancelled{},
          Export{job}};
}

TEST(JournalRecord, EveryTagRoundTripsToTheSameRecord) {
  const std::vector<Record> records = OneOfEach();
  std::set<std::string> tags;
  for (size_t i = 0; i < records.size(); ++i) {
    const std::string text = EncodeRecord(records[i]);
    auto decoded = DecodeRecord(text, i);
    ASSERT_TRUE(decoded.ok()) << text << ": " << decoded.status();
    EXPECT_EQ(decoded->index(), records[i].index()) << text;
    EXPECT_EQ(TagOf(*decoded), TagOf(records[i]));
    EXPECT_EQ(EncodeRecord(*decoded), text) << "decode(encode(r)) encodes the same";
    tags.insert(std::string(TagOf(records[i])));
  }
  EXPECT_EQ(tags.size(), 12u) << "every tag, requeued and failed included";
  // Field values survive, not just the shape.
  auto submitted = std::get<Submitted>(*DecodeRecord(EncodeRecord(records[0]), 0));
  EXPECT_EQ(submitted.spec.model(), "/models/m.gguf");
  EXPECT_EQ(submitted.spec.refusal_markers(0), "sorry");
  EXPECT_EQ(submitted.order, 3);
  auto asked = std::get<Asked>(*DecodeRecord(EncodeRecord(records[3]), 3));
  EXPECT_EQ(asked.params.at("attn.o_proj.max_weight"), 1.25);
  auto completed = std::get<Completed>(*DecodeRecord(EncodeRecord(records[5]), 5));
  EXPECT_EQ(completed.scores.kl_divergence(), 0.125);
  EXPECT_EQ(completed.scores.refusals(), 3);
  auto failed = std::get<Returned>(*DecodeRecord(EncodeRecord(records[7]), 7));
  EXPECT_TRUE(failed.failed);
  EXPECT_EQ(failed.cause, LeaseCause::kWorkerFailed);
  EXPECT_EQ(failed.error, "3 workers reported a failure");
  EXPECT_EQ(std::get<Returned>(*DecodeRecord(EncodeRecord(records[8]), 8)).cause,
            LeaseCause::kRestart);
  auto job = std::get<Export>(*DecodeRecord(EncodeRecord(records[12]), 12)).job;
  EXPECT_EQ(job.export_id(), "x1");
  EXPECT_EQ(job.request().trial(), 4);
  EXPECT_EQ(job.state(), v1::EXPORT_STATE_RUNNING);
}

TEST(JournalRecord, OtherScorersScoresRoundTripBesideTheObjectives) {
  v1::TrialScores scores;
  scores.set_refusals(3);
  scores.set_refusal_prompts(100);
  scores.set_kl_divergence(0.125);
  scores.set_judge_refusals(0);  // present although zero: the judge saw no refusal
  scores.set_judge_prompts(100);
  scores.set_judge_unclear(2);
  scores.set_perplexity(12.5);
  const std::string text = EncodeRecord(Completed{4, scores});
  auto completed = DecodeRecord(text, 0);
  ASSERT_TRUE(completed.ok()) << completed.status();
  const v1::TrialScores& back = std::get<Completed>(*completed).scores;
  EXPECT_TRUE(back.has_judge_refusals());
  EXPECT_EQ(back.SerializeAsString(), scores.SerializeAsString()) << text;
  v1::TrialScores failed_judge;
  failed_judge.set_judge_prompts(100);
  failed_judge.set_judge_error("judge http://h/v1: unreachable (Connection)");
  auto prepared = DecodeRecord(EncodeRecord(Prepared{30, 41, "", failed_judge}), 1);
  ASSERT_TRUE(prepared.ok()) << prepared.status();
  EXPECT_EQ(std::get<Prepared>(*prepared).baseline.judge_error(), failed_judge.judge_error());
  EXPECT_FALSE(std::get<Prepared>(*prepared).baseline.has_judge_refusals());
  // A journal without them (every journal before the other scorers) has none.
  auto old = DecodeRecord(
      R"({"type":"completed","number":1,"refusals":2,"refusal_prompts":10,"kl_divergence":0.5})",
      2);
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_FALSE(std::get<Completed>(*old).scores.has_perplexity());
  // A field a newer schism added is skipped, not refused (fields are only ever added).
  auto newer = DecodeRecord(
      R"({"type":"completed","number":1,"refusals":2,"refusal_prompts":10,"kl_divergence":0.5,)"
      R"("other_scores":{"perplexity":9.5,"toxicity":0.25}})",
      3);
  ASSERT_TRUE(newer.ok()) << newer.status();
  EXPECT_EQ(std::get<Completed>(*newer).scores.perplexity(), 9.5);
  auto corrupt = DecodeRecord(
      R"({"type":"completed","number":1,"refusals":2,"refusal_prompts":10,"kl_divergence":0.5,)"
      R"("other_scores":{"perplexity":"high"}})",
      3);
  ASSERT_FALSE(corrupt.ok());
  EXPECT_NE(corrupt.status().message().find("other_scores"), std::string::npos) << corrupt.status();
}

TEST(JournalRecord, OlderJournalsDecodeWithTheDefaultsTheyImplied) {
  // Before leases survived restarts: no worker or lease; before causes: every return an expiry;
  // before Trial.error: the reason only; before response prefixes: none.
  auto leased = DecodeRecord(R"({"type":"leased","number":0,"attempt":1})", 0);
  ASSERT_TRUE(leased.ok()) << leased.status();
  EXPECT_EQ(std::get<Leased>(*leased).lease, "");
  auto returned = DecodeRecord(R"({"type":"failed","number":0,"reason":"lease expired"})", 1);
  ASSERT_TRUE(returned.ok()) << returned.status();
  EXPECT_EQ(std::get<Returned>(*returned).cause, LeaseCause::kExpired);
  EXPECT_FALSE(std::get<Returned>(*returned).worker.has_value());
  EXPECT_EQ(std::get<Returned>(*returned).error, "lease expired");
  auto prepared = DecodeRecord(R"({"type":"prepared","num_layers":30,"baseline_refusals":5})", 2);
  ASSERT_TRUE(prepared.ok()) << prepared.status();
  EXPECT_FALSE(std::get<Prepared>(*prepared).response_prefix.has_value());
}

TEST(JournalRecord, CorruptRecordsAreDataLossNamingTheirPositionAndField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"not json", "journal record 9 is not a JSON object"},
      {"[1, 2]", "journal record 9 is not a JSON object"},
      {R"({"number": 1})", "has no string \"type\""},
      {R"({"type": 7})", "has no string \"type\""},
      {R"({"type": "rebooted"})", "unknown type \"rebooted\""},
      {R"({"type":"asked","number":"zero","params":{}})",
       "(asked): field \"number\" must be an integer"},
      {R"({"type":"asked","number":-1,"params":{}})", "(asked): field \"number\" must be >= 0"},
      {R"({"type":"asked","number":1,"params":{"x":"high"}})",
       "value of \"x\" must be a finite number"},
      {R"({"type":"asked","number":1})", "(asked): field \"params\" is missing"},
      {R"({"type":"completed","number":1,"refusals":1,"refusal_prompts":2})",
       "field \"kl_divergence\" is missing"},
      {R"({"type":"completed","number":1,"refusals":1.5,"refusal_prompts":2,"kl_divergence":0})",
       "field \"refusals\" must be an integer"},
      {R"({"type":"leased","number":1,"attempt":99999999999})",
       "field \"attempt\" is out of range"},
      {R"({"type":"requeued","number":1,"cause":"bored"})",
       "\"bored\" is not expired, worker_failed or restart"},
      {R"({"type":"submitted","spec":"{\"n_trials\": \"many\"}"})",
       "(submitted): field \"spec\" is not a valid message"},
      {R"({"type":"export","job":17})", "(export): field \"job\" must be a string"},
      {R"({"type":"prepared","num_layers":30})", "field \"baseline_refusals\" is missing"},
  };
  for (const auto& [text, expected] : cases) {
    auto decoded = DecodeRecord(text, 9);
    ASSERT_FALSE(decoded.ok()) << text;
    EXPECT_EQ(decoded.status().code(), absl::StatusCode::kDataLoss) << text;
    EXPECT_TRUE(absl::StrContains(decoded.status().message(), expected))
        << text << " -> " << decoded.status();
    EXPECT_TRUE(absl::StrContains(decoded.status().message(), "journal record 9"))
        << decoded.status();
  }
}

}  // namespace
}  // namespace schism::coordinator::journal
