// The runtime on a CUDA device. Every test here needs a GPU and is skipped, saying so, where
// there is none (CI, the development machine); scripts/device-check runs them on a lent one.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include "common/env.h"
#include "common/prompt_set.h"
#include "tests/test_support.h"
#include "worker/runtime/generator.h"
#include "worker/runtime/model_loader.h"
#include "worker/runtime/nf4.h"
#ifdef SCHISM_WITH_CUDA_KERNELS
#include "worker/runtime/cuda/nf4_kernels.h"
#endif

namespace schism::model {
namespace {

#define SKIP_WITHOUT_CUDA()         \
  if (!torch::cuda::is_available()) \
  GTEST_SKIP() << "needs a CUDA GPU; none here (scripts/device-check runs this)"

TEST(CudaNf4, DequantizationOnTheGpuEqualsTheCpuPath) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(5);
  const at::Tensor w = at::randn({384, 640}) * 0.02;
  const Nf4Tensor cpu = QuantizeNf4(w, /*double_quant=*/true);
  const Nf4Tensor gpu = Nf4ToDevice(cpu, c10::Device(c10::kCUDA, 0));
  EXPECT_TRUE(at::equal(DequantizeNf4(gpu).cpu(), DequantizeNf4(cpu)));
  EXPECT_TRUE(at::equal(DequantizeNf4WithAtenOps(gpu, at::kFloat).cpu(), DequantizeNf4(cpu)));
  EXPECT_TRUE(
      at::equal(DequantizeNf4(gpu, at::kBFloat16).cpu(), DequantizeNf4(cpu, at::kBFloat16)));
}

TEST(CudaNf4, DecodeGemvEqualsTheDequantizedProduct) {
  SKIP_WITHOUT_CUDA();
#ifndef SCHISM_WITH_CUDA_KERNELS
  GTEST_SKIP() << "built without -DSCHISM_CUDA=ON";
#else
  at::manual_seed(6);
  const c10::Device device(c10::kCUDA, 0);
  const Nf4Tensor q = Nf4ToDevice(QuantizeNf4(at::randn({1000, 1536}) * 0.02, true), device);
  const at::Tensor dense = DequantizeNf4(q);
  for (int64_t rows = 1; rows <= cuda::kNf4GemvMaxRows; ++rows) {
    const at::Tensor x = at::randn({rows, 1536}, at::TensorOptions().device(device));
    const at::Tensor expected = at::matmul(x.to(at::kDouble), dense.to(at::kDouble).t());
    const at::Tensor got = cuda::Nf4Gemv(x, q);
    EXPECT_LT((got.to(at::kDouble) - expected).abs().max().item<double>(), 1e-4) << rows << " rows";
    const at::Tensor bf = cuda::Nf4Gemv(x.to(at::kBFloat16), q);
    EXPECT_LT((bf.to(at::kDouble) - expected).abs().max().item<double>(), 0.05)
        << rows << " rows, bf16";
  }
#endif
}

// The real model on cuda:0 against the CPU path: float32 logits, bfloat16 top-1, and the packed
// 4-bit model on both devices.
TEST(CudaRuntime, RealModelOnTheGpuMatchesTheCpu) {
  SKIP_WITHOUT_CUDA();
  auto lines = common::LoadPromptLines(common::DefaultDataDir() + "/harmless_test.txt", "[:16]");
  ASSERT_TRUE(lines.ok());
  auto logits = [&](LoadOptions options) {
    auto model = LoadModel(testing_support::RealModelPath(), options);
    EXPECT_TRUE(model.ok()) << model.status();
    std::vector<TokenIds> prompts;
    for (const auto& line : *lines) {
      prompts.push_back(model->tokenizer->Encode(
          "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n" + line +
          "<|im_end|>\n<|im_start|>assistant\n"));
    }
    return PromptForward(*model->transformer, prompts, 2).last_logits.cpu();
  };
  const c10::Device gpu(c10::kCUDA, 0);
  const at::Tensor cpu = logits({});
  const at::Tensor fp32 = logits({c10::kFloat, Quantization::kNone, gpu});
  const float fp32_diff = (fp32 - cpu).abs().max().item<float>();
  std::cout << "cuda float32 vs cpu: max |dlogit| " << fp32_diff << "\n";
  EXPECT_LT(fp32_diff, 2e-3f);
  const at::Tensor bf16 = logits({c10::kBFloat16, Quantization::kNone, gpu});
  const int agree = bf16.argmax(-1).eq(cpu.argmax(-1)).sum().item<int>();
  std::cout << "cuda bfloat16 vs cpu float32: top-1 agrees on " << agree << "/16\n";
  EXPECT_GE(agree, 14);
  const at::Tensor nf4_cpu = logits({c10::kFloat, Quantization::kNf4});
  const at::Tensor nf4_gpu = logits({c10::kFloat, Quantization::kNf4, gpu});
  const float nf4_diff = (nf4_gpu - nf4_cpu).abs().max().item<float>();
  std::cout << "packed nf4, cuda vs cpu: max |dlogit| " << nf4_diff << "\n";
  EXPECT_LT(nf4_diff, 2e-3f);
}

}  // namespace
}  // namespace schism::model
