// MKL-packed weights (packed_gemm.h): the product equals at::linear's, bias included, for the row
// counts that use it, and a float32 CPU model packs its decoder layers.
#include "worker/runtime/packed_gemm.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <limits>

#include "tests/test_support.h"
#include "worker/runtime/model_loader.h"

namespace schism::model {
namespace {

// Measured on 2 cores (AVX-512): bit for bit for 576 inputs; with 1536 inputs MKL splits the sums
// differently for some row counts, up to 1 ulp of the largest output (9.5e-7 at |y| ~ 8).
TEST(PackedWeight, ProductEqualsLinearWithAndWithoutBias) {
  if (!PackedWeight::Available()) GTEST_SKIP() << "this libtorch has no MKL packed GEMM";
  at::manual_seed(7);
  // SmolLM2's MLP and attention shapes (576 hidden, 1536 MLP, 192 key/value).
  for (auto [out, in] : {std::pair<int64_t, int64_t>{1536, 576}, {576, 1536}, {192, 576}}) {
    const at::Tensor w = at::randn({out, in}) * 0.05;
    const at::Tensor bias = at::randn({out});
    const auto packed = PackedWeight::Pack(w);
    ASSERT_NE(packed, nullptr);
    EXPECT_EQ(packed->out(), out);
    EXPECT_GE(packed->bytes(), out * in * 4);
    for (int64_t rows : {16, 32, 33, 64, 100, 257}) {
      const at::Tensor x = at::randn({rows, in});
      for (const at::Tensor& b : {at::Tensor(), bias}) {
        const at::Tensor expected = b.defined() ? at::linear(x, w, b) : at::linear(x, w);
        const at::Tensor got = packed->Multiply(x, b);
        const float diff = (got - expected).abs().max().item<float>();
        const float ulp =
            expected.abs().max().item<float>() * std::numeric_limits<float>::epsilon();
        if (in == 576) {
          EXPECT_TRUE(at::equal(got, expected)) << out << "x" << in << ", " << rows << " rows";
        } else {
          EXPECT_LE(diff, 2 * ulp) << out << "x" << in << ", " << rows << " rows";
        }
      }
    }
  }
}

TEST(PackedWeight, FewerThanSixteenRowsStayWithinFloat32RoundingOfLinear) {
  // Below 16 rows at::linear leaves the packed kernel (one row: a matrix-vector product), so
  // the sums round differently; measured here: at most 6 units of the largest output's last
  // place.
  if (!PackedWeight::Available()) GTEST_SKIP() << "this libtorch has no MKL packed GEMM";
  at::manual_seed(11);
  float worst = 0;
  for (auto [out, in] : {std::pair<int64_t, int64_t>{1536, 576}, {576, 1536}, {192, 576}}) {
    const at::Tensor w = at::randn({out, in}) * 0.05;
    const auto packed = PackedWeight::Pack(w);
    ASSERT_NE(packed, nullptr);
    for (int64_t rows = 1; rows < 16; ++rows) {
      const at::Tensor x = at::randn({rows, in});
      const at::Tensor expected = at::linear(x, w);
      const float ulp = expected.abs().max().item<float>() * std::numeric_limits<float>::epsilon();
      const float diff = (packed->Multiply(x) - expected).abs().max().item<float>() / ulp;
      worst = std::max(worst, diff);
      EXPECT_LE(diff, 8.0f) << out << "x" << in << ", " << rows << " rows";
    }
  }
  std::cout << "worst: " << worst << " ulp\n";
}

TEST(PackedWeight, RefusesWhatItCannotPack) {
  EXPECT_EQ(PackedWeight::Pack(at::Tensor()), nullptr);
  EXPECT_EQ(PackedWeight::Pack(at::randn({4, 4}).to(at::kBFloat16)), nullptr);
  EXPECT_EQ(PackedWeight::Pack(at::randn({4})), nullptr);
  if (PackedWeight::Available()) {
    const auto packed = PackedWeight::Pack(at::randn({8, 16}));
    ASSERT_NE(packed, nullptr);
    EXPECT_THROW(packed->Multiply(at::randn({40, 15})), c10::Error);
  }
}

TEST(PackedWeight, AFloat32CpuModelPacksItsDecoderLayersAndA4BitOneDoesNot) {
  if (!PackedWeight::Available()) GTEST_SKIP() << "this libtorch has no MKL packed GEMM";
  auto dense = LoadModel(testing_support::RealModelPath());
  ASSERT_TRUE(dense.ok()) << dense.status();
  const Transformer& t = *dense->transformer;
  EXPECT_GT(t.mkl_packed_bytes(), 0);
  EXPECT_LE(t.mkl_packed_bytes(), Transformer::kMaxPackedBytes);
  for (const LayerWeights& layer : t.weights().layers) {
    for (const LinearWeights* w : {&layer.q_proj, &layer.k_proj, &layer.v_proj, &layer.o_proj,
                                   &layer.gate_proj, &layer.up_proj, &layer.down_proj})
      EXPECT_NE(w->mkl_packed, nullptr);
  }
  LoadOptions nf4;
  nf4.quantization = Quantization::kNf4;
  auto packed4 = LoadModel(testing_support::RealModelPath(), nf4);
  ASSERT_TRUE(packed4.ok()) << packed4.status();
  EXPECT_EQ(packed4->transformer->mkl_packed_bytes(), 0);
}

// Weights copied from a model carry its packed copies; a model built from them with one weight
// replaced multiplies by the new weight, not by the stale packing.
TEST(PackedWeight, AModelBuiltFromCopiedWeightsPacksItsOwn) {
  if (!PackedWeight::Available()) GTEST_SKIP() << "this libtorch has no MKL packed GEMM";
  auto loaded = LoadModel(testing_support::RealModelPath());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const Transformer& original = *loaded->transformer;
  ModelWeights copy = original.weights();
  LinearWeights& gate = copy.layers[3].gate_proj;
  ASSERT_NE(gate.mkl_packed, nullptr);
  gate.weight = gate.weight * 2;
  const Transformer rebuilt(original.config(), std::move(copy));
  const LinearWeights& packed = rebuilt.weights().layers[3].gate_proj;
  ASSERT_NE(packed.mkl_packed, nullptr);
  EXPECT_NE(packed.mkl_packed, original.weights().layers[3].gate_proj.mkl_packed);
  const at::Tensor x = at::randn({40, packed.weight.size(1)});
  EXPECT_TRUE(at::equal(packed.mkl_packed->Multiply(x), at::linear(x, packed.weight)));
}

}  // namespace
}  // namespace schism::model
