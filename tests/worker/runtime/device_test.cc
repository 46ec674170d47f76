#include "worker/runtime/device.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

namespace schism::model {
namespace {

TEST(LibtorchCpu, MatmulRunsAndIsCorrect) {
  // Large enough to go through the optimized BLAS / oneDNN path, where the AMX SIGILL happened.
  at::manual_seed(0);
  auto a = at::randn({256, 512});
  auto b = at::randn({512, 128});
  auto c = at::matmul(a, b);
  auto reference = (a.unsqueeze(2) * b.unsqueeze(0)).sum(1);
  EXPECT_TRUE(at::allclose(c, reference, 1e-4, 1e-4));
  auto bf = at::matmul(a.to(at::kBFloat16), b.to(at::kBFloat16)).to(at::kFloat);
  EXPECT_LT((bf - c).abs().max().item<float>(), 1.0f);
}

TEST(ParseDevice, AcceptsCpuAndRejectsMalformedNames) {
  auto cpu = ParseDevice("cpu");
  ASSERT_TRUE(cpu.ok());
  EXPECT_TRUE(cpu->is_cpu());
  for (const char* bad : {"gpu", "cuda:", "cuda:x", "cuda:-1", "cudax"}) {
    auto parsed = ParseDevice(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_NE(parsed.status().message().find(bad), std::string::npos) << parsed.status();
  }
}

TEST(ParseDevice, CudaWithoutCudaSaysSo) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "CUDA present";
  auto parsed = ParseDevice("cuda:0");
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.status().message().find("CUDA is not available"), std::string::npos);
}

TEST(SetComputeThreads, ChangesLibtorchThreadCount) {
  SetComputeThreads(1);
  EXPECT_EQ(at::get_num_threads(), 1);
  SetComputeThreads(0);  // keeps the current value
  EXPECT_EQ(at::get_num_threads(), 1);
}

}  // namespace
}  // namespace schism::model
