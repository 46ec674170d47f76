// The forward pass against llama.cpp (the `llama-cpp-python` package) on the same F32 weights.
#include "worker/runtime/transformer.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "common/env.h"
#include "common/prompt_set.h"
#include "tests/test_support.h"
#include "tests/worker/runtime/llama_cpp_oracle.h"
#include "worker/runtime/generator.h"
#include "worker/runtime/model_loader.h"

namespace schism::model {
namespace {

constexpr int kGreedyTokens = 32;

std::string ChatMl(const std::string& user) {
  return "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n" + user +
         "<|im_end|>\n<|im_start|>assistant\n";
}

TEST(Transformer, RealModelMatchesLlamaCppLogitsAndGreedyContinuations) {
  auto model = LoadModel(testing_support::RealModelPath());
  ASSERT_TRUE(model.ok()) << model.status();
  const std::string data = common::DefaultDataDir();
  std::vector<TokenIds> prompts;
  for (const char* file : {"/harmful_test.txt", "/harmless_test.txt"}) {
    auto lines = common::LoadPromptLines(data + file, "[:10]");
    ASSERT_TRUE(lines.ok()) << lines.status();
    for (const std::string& line : *lines)
      prompts.push_back(model->tokenizer->Encode(ChatMl(line)));
  }
  ASSERT_EQ(prompts.size(), 20u);
  const Transformer& t = *model->transformer;
  LlamaCppResult oracle = RunLlamaCpp(testing_support::RealModelPath(), prompts,
                                      t.config().vocab_size, kGreedyTokens, "llama_cpp_real");
  ASSERT_TRUE(oracle.logits.defined());

  // All 20 prompts in one left-padded batch.
  const int32_t pad = *model->tokenizer->spec().pad_id;
  at::Tensor logits = PromptForward(t, prompts, pad).last_logits;
  const float max_diff = (logits - oracle.logits).abs().max().item<float>();
  RecordProperty("max_abs_logit_diff", std::to_string(max_diff));
  std::cout << "max |logit(schism) - logit(llama.cpp)| over 20 prompts: " << max_diff << "\n";
  EXPECT_LT(max_diff, 2e-4f);  // measured 6.4e-5 (torch 2.15, MKL, SDPA)
  EXPECT_TRUE(at::equal(logits.argmax(-1), oracle.logits.argmax(-1)));

  GreedyOptions options;
  options.max_new_tokens = kGreedyTokens;
  options.pad_id = pad;  // no stop ids: 32 tokens each, as the oracle
  std::vector<TokenIds> greedy = GreedyGenerate(t, prompts, options);
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(greedy[i], oracle.greedy[i])
        << "prompt " << i << ": schism \"" << model->tokenizer->Decode(greedy[i])
        << "\" vs llama.cpp \"" << model->tokenizer->Decode(oracle.greedy[i]) << "\"";
  }
}

// GreedyTokens screens the vocabulary in bfloat16 and settles it in float32: on the real model's
// states, and on states moved so that their two best tokens are 0.01 apart (well inside the
// bfloat16 screen's error, well outside float32 summation order), it must give the float32
// argmax of every row. On a CPU without bfloat16 products it is that argmax by construction.
TEST(Transformer, GreedyTokensAreTheFloat32ArgmaxEvenForNearTies) {
  auto model = LoadModel(testing_support::RealModelPath());
  ASSERT_TRUE(model.ok()) << model.status();
  const Transformer& t = *model->transformer;
  std::vector<TokenIds> prompts;
  auto lines = common::LoadPromptLines(common::DefaultDataDir() + "/harmless_test.txt", "[:24]");
  ASSERT_TRUE(lines.ok()) << lines.status();
  for (const std::string& line : *lines) prompts.push_back(model->tokenizer->Encode(ChatMl(line)));
  const int32_t pad = *model->tokenizer->spec().pad_id;
  const at::Tensor states =
      PromptForward(t, prompts, pad, /*capture_hidden_states=*/true).hidden_states.back();
  const at::Tensor w = t.weights().lm_head;
  auto float32_argmax = [&](const at::Tensor& x) { return at::mm(x, w.t()).argmax(-1); };
  // Move each row along w_b - w_a (a, b its two best tokens) until logit_a - logit_b = ±0.01.
  std::vector<at::Tensor> rows = {states};
  for (double gap : {0.01, -0.01}) {
    const auto [top, ids] = at::mm(states, w.t()).topk(2, -1);
    const at::Tensor diff =
        w.index_select(0, ids.select(1, 1)) - w.index_select(0, ids.select(1, 0));
    const at::Tensor g = (top.select(1, 0) - top.select(1, 1)).unsqueeze(1);
    rows.push_back(states + (g - gap) / diff.pow(2).sum(-1, true) * diff);
  }
  const at::Tensor x = at::cat(rows, 0).contiguous();
  const at::Tensor expected = float32_argmax(x);
  int64_t screen_wrong = 0;
  for (int64_t start = 0; start < x.size(0); start += 32) {  // decode-sized chunks
    const at::Tensor chunk = x.narrow(0, start, std::min<int64_t>(32, x.size(0) - start));
    const at::Tensor got = t.GreedyTokens(chunk);
    EXPECT_TRUE(at::equal(got, expected.narrow(0, start, chunk.size(0))))
        << "rows " << start << "..: " << got << " vs " << expected.narrow(0, start, chunk.size(0));
    if (t.screens_lm_head()) {
      const at::Tensor screen_only =
          at::mm(chunk.to(at::kBFloat16), w.to(at::kBFloat16).t()).argmax(-1);
      screen_wrong +=
          (screen_only != expected.narrow(0, start, chunk.size(0))).sum().item<int64_t>();
    }
  }
  std::cout << "screened: " << t.screens_lm_head()
            << "; rows the bfloat16 screen alone gets wrong: " << screen_wrong << " of "
            << x.size(0) << "\n";
  // The near ties are there to be settled in float32: the screen alone misses some of them.
  if (t.screens_lm_head()) {
    EXPECT_GT(screen_wrong, 0);
  }
}

TEST(Transformer, Bfloat16ComputeStaysCloseToFloat32) {
  auto fp32 = LoadModel(testing_support::RealModelPath());
  auto bf16 = LoadModel(testing_support::RealModelPath(), {c10::kBFloat16});
  ASSERT_TRUE(fp32.ok() && bf16.ok());
  EXPECT_EQ(bf16->transformer->weights().embed_tokens.scalar_type(), c10::kBFloat16);
  auto lines = common::LoadPromptLines(common::DefaultDataDir() + "/harmless_test.txt", "[:20]");
  ASSERT_TRUE(lines.ok());
  std::vector<TokenIds> prompts;
  for (const auto& line : *lines) prompts.push_back(fp32->tokenizer->Encode(ChatMl(line)));
  at::Tensor a = PromptForward(*fp32->transformer, prompts, 2).last_logits;
  at::Tensor b = PromptForward(*bf16->transformer, prompts, 2).last_logits;
  const int agree = a.argmax(-1).eq(b.argmax(-1)).sum().item<int>();
  const float max_diff = (a - b).abs().max().item<float>();
  std::cout << "bf16 vs fp32: top-1 agrees on " << agree << "/20, max |dlogit| " << max_diff
            << "\n";
  EXPECT_GE(agree, 18);
  EXPECT_LT(max_diff, 1.0f);  // measured 0.57
}

// A 4-bit worker keeps only packed NF4 codes of every decoder linear layer; its logits are those
// of the same model whose weights are the dequantized codes, and it holds about an eighth of the
// bytes of the float32 linear layers (a quarter of bfloat16; embeddings and lm_head stay dense).
TEST(Transformer, PackedNf4GivesTheDequantizedWeightsLogitsInAnEighthOfTheFloat32Bytes) {
  LoadOptions options;
  options.quantization = Quantization::kNf4;
  auto packed = LoadModel(testing_support::RealModelPath(), options);
  ASSERT_TRUE(packed.ok()) << packed.status();
  const Transformer& t = *packed->transformer;
  ModelWeights dense = t.weights();
  int64_t packed_bytes = 0, dense_bytes = 0;
  for (LayerWeights& layer : dense.layers) {
    for (LinearWeights* linear : {&layer.q_proj, &layer.k_proj, &layer.v_proj, &layer.o_proj,
                                  &layer.gate_proj, &layer.up_proj, &layer.down_proj}) {
      ASSERT_FALSE(linear->weight.defined()) << "a 4-bit worker holds no dense linear weight";
      ASSERT_TRUE(linear->nf4.double_quant);
      packed_bytes += Nf4Bytes(linear->nf4);
      linear->weight = DequantizeNf4(linear->nf4);
      linear->nf4 = Nf4Tensor();
      dense_bytes += linear->weight.numel() * 4;
    }
  }
  std::cout << "decoder linear layers: " << packed_bytes / 1024 << " KiB packed NF4, "
            << dense_bytes / 1024 << " KiB float32 ("
            << static_cast<double>(packed_bytes) / dense_bytes << "x)\n";
  EXPECT_LT(packed_bytes, dense_bytes * 0.13);  // 0.516 of 4 bytes per weight: 0.129x
  const Transformer reference(t.config(), std::move(dense));
  auto lines = common::LoadPromptLines(common::DefaultDataDir() + "/harmless_test.txt", "[:8]");
  ASSERT_TRUE(lines.ok());
  std::vector<TokenIds> prompts;
  for (const auto& line : *lines) prompts.push_back(packed->tokenizer->Encode(ChatMl(line)));
  const at::Tensor a = PromptForward(t, prompts, 2).last_logits;
  const at::Tensor b = PromptForward(reference, prompts, 2).last_logits;
  std::cout << "packed vs dequantized weights: max |dlogit| " << (a - b).abs().max().item<float>()
            << "\n";
  EXPECT_TRUE(at::equal(a, b));
}

TEST(Transformer, LeftPaddingDoesNotChangeResults) {
  auto model = LoadModel(testing_support::RealModelPath());
  ASSERT_TRUE(model.ok()) << model.status();
  const Transformer& t = *model->transformer;
  TokenIds short_prompt = model->tokenizer->Encode(ChatMl("Hi"));
  TokenIds long_prompt = model->tokenizer->Encode(ChatMl("Explain how tides work in detail."));
  const int32_t pad = *model->tokenizer->spec().pad_id;
  ForwardOutput alone = PromptForward(t, {short_prompt}, pad, true);
  ForwardOutput batched = PromptForward(t, {long_prompt, short_prompt}, pad, true);
  EXPECT_LT((alone.last_logits[0] - batched.last_logits[1]).abs().max().item<float>(), 1e-3f);
  ASSERT_EQ(batched.hidden_states.size(), static_cast<size_t>(t.config().num_layers + 1));
  for (size_t i = 0; i < alone.hidden_states.size(); ++i) {
    EXPECT_TRUE(at::allclose(alone.hidden_states[i][0], batched.hidden_states[i][1], 1e-3, 1e-3))
        << "hidden state " << i;
  }
}

TEST(ModelLoader, MissingAndUnknownFilesGiveSpecificErrors) {
  auto missing = LoadModel("/nonexistent/model.gguf");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/model.gguf"), std::string::npos);
  auto folder = LoadModel("/tmp");
  ASSERT_FALSE(folder.ok());
}

}  // namespace
}  // namespace schism::model
