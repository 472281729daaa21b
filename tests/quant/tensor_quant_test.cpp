#include "mcompress/quant/tensor_quant.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "mcompress/core/error.h"
#include "test_support.h"

namespace mcompress::quant {
namespace {

std::vector<int> codes(const QuantizedTensor& q) {
  at::Tensor v = q.values.to(at::kInt).reshape({-1}).contiguous();
  return std::vector<int>(v.data_ptr<int>(), v.data_ptr<int>() + v.numel());
}

/// LibTorch's own per-channel int8 codes for `w` with our scales.
at::Tensor torch_per_channel(const at::Tensor& w, const QuantizedTensor& q) {
  at::Tensor zp = at::zeros({q.scale.numel()}, at::kLong);
  return at::quantize_per_channel(w, q.scale, zp, 0, at::kQInt8);
}

at::Tensor torch_per_tensor(const at::Tensor& w, const QuantizedTensor& q) {
  return at::quantize_per_tensor(w, q.scale.item<double>(), 0, at::kQInt8);
}

int64_t mismatches(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kInt) != b.to(at::kInt)).sum().item<int64_t>();
}

// ---------------------------------------------------------------------------------------------
// Tier 1: hand-computed.

TEST(TensorQuantTest, PerChannelLayoutAndZeroRow) {
  at::Tensor w = at::tensor({0.f, 0.f, 0.f, 2.54f, -1.0f, 0.f}).reshape({2, 3});
  QuantizedTensor q = quantize_weight_int8(w, Granularity::kPerChannel);
  EXPECT_EQ(q.encoding, Encoding::kInt8);
  EXPECT_EQ(q.axis, 0);
  EXPECT_EQ(q.values.scalar_type(), at::kChar);
  EXPECT_EQ(q.values.sizes(), w.sizes());
  EXPECT_EQ(q.scale.scalar_type(), at::kFloat);
  EXPECT_EQ(q.scale.sizes(), at::IntArrayRef({2}));
  EXPECT_EQ(q.zero_point.scalar_type(), at::kInt);
  EXPECT_EQ(q.zero_point.sizes(), at::IntArrayRef({2}));
  EXPECT_EQ(q.zero_point.abs().sum().item<int>(), 0);
  // The all-zero row: scale 1, codes 0.
  EXPECT_EQ(q.scale[0].item<float>(), 1.0f);
  EXPECT_FLOAT_EQ(q.scale[1].item<float>(), 2.54f / 127.0f);
  EXPECT_EQ(codes(q), (std::vector<int>{0, 0, 0, 127, -50, 0}));
}

TEST(TensorQuantTest, ChannelExtremesMapToPlusMinus127) {
  at::Tensor w = at::tensor({-3.f, 1.f, 3.f, 0.5f, -0.1f, 0.2f, -7.f, 7.f, 0.f}).reshape({3, 3});
  QuantizedTensor q = quantize_weight_int8(w, Granularity::kPerChannel);
  // 1 / (3/127) = 42.33 -> 42; -0.1 / (0.5/127) = -25.4 -> -25; 0.2 -> 50.8 -> 51.
  EXPECT_EQ(codes(q), (std::vector<int>{-127, 42, 127, 127, -25, 51, -127, 127, 0}));
}

TEST(TensorQuantTest, TiesRoundHalfToEven) {
  // max |W| = 63.5 -> scale 0.5 exactly, 1/scale = 2 exactly: every x·2 below is an exact tie.
  at::Tensor w = at::tensor({0.25f, 0.75f, 1.25f, 2.25f, -0.25f, -0.75f, -1.25f, -2.25f, 63.5f});
  for (Granularity g : {Granularity::kPerTensor, Granularity::kPerChannel}) {
    at::Tensor input = g == Granularity::kPerChannel ? w.reshape({1, -1}) : w;
    QuantizedTensor q = quantize_weight_int8(input, g);
    EXPECT_EQ(q.scale.item<float>(), 0.5f);
    // Half away from zero would give 1, 2, 3, 5.
    EXPECT_EQ(codes(q), (std::vector<int>{0, 2, 2, 4, 0, -2, -2, -4, 127}));
  }
}

TEST(TensorQuantTest, PerTensorUsesOneScale) {
  at::Tensor w = at::tensor({1.f, -2.1f, 0.5f, 4.f}).reshape({2, 2});
  QuantizedTensor q = quantize_weight_int8(w, Granularity::kPerTensor);
  EXPECT_EQ(q.axis, -1);
  EXPECT_EQ(q.scale.sizes(), at::IntArrayRef({1}));
  EXPECT_EQ(q.zero_point.sizes(), at::IntArrayRef({1}));
  EXPECT_FLOAT_EQ(q.scale.item<float>(), 4.0f / 127.0f);
  // 31.75 -> 32, -66.675 -> -67, 15.875 -> 16, 127.
  EXPECT_EQ(codes(q), (std::vector<int>{32, -67, 16, 127}));
  EXPECT_TRUE(at::allclose(q.dequantize(), w, /*rtol=*/0, /*atol=*/2.0 / 127.0));
}

TEST(TensorQuantTest, AllZeroTensorPerTensor) {
  QuantizedTensor q = quantize_weight_int8(at::zeros({4, 3}), Granularity::kPerTensor);
  EXPECT_EQ(q.scale.item<float>(), 1.0f);
  EXPECT_EQ(q.values.abs().sum().item<int64_t>(), 0);
}

TEST(TensorQuantTest, NonFiniteWeightIsModelError) {
  at::Tensor w = at::tensor({1.f, std::nanf(""), 2.f});
  ASSERT_THROWS_WITH(quantize_weight_int8(w, Granularity::kPerTensor), ModelError, "NaN");
  at::Tensor inf = at::tensor({1.f, std::numeric_limits<float>::infinity()}).reshape({1, 2});
  ASSERT_THROWS_WITH(quantize_weight_int8(inf, Granularity::kPerChannel), ModelError, "Inf");
}

TEST(TensorQuantTest, DoesNotModifyInputOrKeepAutograd) {
  at::Tensor w = at::randn({3, 4}).set_requires_grad(true);
  at::Tensor before = w.detach().clone();
  QuantizedTensor q = quantize_weight_int8(w, Granularity::kPerChannel);
  EXPECT_TRUE(at::equal(w.detach(), before));
  EXPECT_FALSE(q.values.requires_grad());
  EXPECT_FALSE(q.scale.requires_grad());
}

// ---------------------------------------------------------------------------------------------
// Tier 2: against LibTorch's quantizer.

TEST(TensorQuantTest, PerChannelCodesMatchLibTorch) {
  at::manual_seed(1234);
  const std::vector<std::vector<int64_t>> shapes = {{1, 5},   {127, 3, 3, 3}, {255, 17},
                                                    {64, 33}, {3, 1, 5, 5},   {7}};
  for (const auto& shape : shapes) {
    at::Tensor w = at::randn(shape);
    // Per-channel magnitudes spanning many decades, including a tiny and a huge channel.
    at::Tensor mag = at::pow(10.0, at::rand({shape[0]}) * 8 - 4);
    std::vector<int64_t> bshape(shape.size(), 1);
    bshape[0] = shape[0];
    w = w * mag.reshape(bshape);
    QuantizedTensor q = quantize_weight_int8(w, Granularity::kPerChannel);
    at::Tensor ref = torch_per_channel(w, q);
    const int64_t bad = mismatches(q.values, ref.int_repr());
    EXPECT_EQ(bad, 0) << bad << " of " << w.numel() << " codes differ from LibTorch for shape "
                      << w.sizes();
    // Dequantisation agrees with LibTorch's within 1e-7 relative.
    at::Tensor ours = q.dequantize();
    at::Tensor theirs = ref.dequantize();
    EXPECT_TRUE(at::allclose(ours, theirs, /*rtol=*/1e-7, /*atol=*/0)) << "shape " << w.sizes();
    // And reconstructs W to within half a step per channel.
    at::Tensor err = (ours - w).abs().reshape({shape[0], -1}).amax(1);
    EXPECT_TRUE((err <= q.scale * 0.5001).all().item<bool>()) << "shape " << w.sizes();
  }
}

TEST(TensorQuantTest, PerTensorCodesMatchLibTorch) {
  at::manual_seed(99);
  for (int64_t channels : {1, 127, 255}) {
    at::Tensor w = at::randn({channels, 9}) * 0.05;
    QuantizedTensor q = quantize_weight_int8(w, Granularity::kPerTensor);
    at::Tensor ref = torch_per_tensor(w, q);
    const int64_t bad = mismatches(q.values, ref.int_repr());
    EXPECT_EQ(bad, 0) << bad << " of " << w.numel() << " codes differ (channels " << channels
                      << ")";
    EXPECT_TRUE(at::allclose(q.dequantize(), ref.dequantize(), 1e-7, 0));
  }
}

TEST(TensorQuantTest, NearHalfStepValuesMatchLibTorch) {
  // Values a few ulps around (k + 0.5)·scale, where round(w · (1/scale)) and round(w / scale)
  // disagree for some: LibTorch multiplies by the float reciprocal and so must we.
  at::manual_seed(7);
  int64_t total_bad = 0;
  int64_t total = 0;
  for (int trial = 0; trial < 20; ++trial) {
    const float amax = at::rand({1}).item<float>() * 3.0f + 0.01f;
    const float scale = amax / 127.0f;
    at::Tensor k = at::randint(-127, 127, {4096}).to(at::kFloat) + 0.5f;
    at::Tensor x = k * scale;
    x = at::nextafter(x, x + at::randn_like(x));
    x = at::nextafter(x, x + at::randn_like(x));
    at::Tensor w = at::cat({at::tensor({amax}), x.clamp(-amax, amax)}).reshape({1, -1});
    QuantizedTensor qc = quantize_weight_int8(w, Granularity::kPerChannel);
    ASSERT_EQ(qc.scale.item<float>(), scale);
    total_bad += mismatches(qc.values, torch_per_channel(w, qc).int_repr());
    QuantizedTensor qt = quantize_weight_int8(w, Granularity::kPerTensor);
    total_bad += mismatches(qt.values, torch_per_tensor(w, qt).int_repr());
    total += 2 * w.numel();
  }
  EXPECT_EQ(total_bad, 0) << total_bad << " of " << total << " near-tie codes differ";
}

// ---------------------------------------------------------------------------------------------
// fp16 / bf16.

TEST(TensorQuantTest, Fp16OverflowDetected) {
  HalfRangeCheck c = check_half_range(at::tensor({70000.f, 1.f, -2.f, 0.f}), Encoding::kFp16);
  EXPECT_EQ(c.overflow, 1);
  EXPECT_EQ(c.underflow, 0);
  EXPECT_EQ(c.nonzero, 3);
  EXPECT_FALSE(c.safe());
  EXPECT_NE(c.describe().find("65504"), std::string::npos) << c.describe();
  EXPECT_NE(c.describe().find("1 value"), std::string::npos) << c.describe();
}

TEST(TensorQuantTest, Fp16OverflowBoundary) {
  // 65504 is the max; up to just below 65520 still rounds to 65504, 65520 rounds to Inf.
  HalfRangeCheck c =
      check_half_range(at::tensor({65504.f, 65519.f, -65519.f, 65520.f, -1e6f}), Encoding::kFp16);
  EXPECT_EQ(c.overflow, 2);
}

TEST(TensorQuantTest, Fp16UnderflowDetected) {
  at::Tensor w = at::ones({100});
  w.index_put_({0}, 1e-9f);
  w.index_put_({1}, -1e-9f);
  HalfRangeCheck c = check_half_range(w, Encoding::kFp16);
  EXPECT_EQ(c.underflow, 2);
  EXPECT_EQ(c.nonzero, 100);
  EXPECT_FALSE(c.safe());  // 2% > 1%
  EXPECT_NE(c.describe().find("2% of non-zeros underflow to 0"), std::string::npos) << c.describe();
  // 1 in 200 (0.5%) is tolerated.
  at::Tensor w2 = at::ones({200});
  w2.index_put_({5}, 1e-9f);
  HalfRangeCheck c2 = check_half_range(w2, Encoding::kFp16);
  EXPECT_EQ(c2.underflow, 1);
  EXPECT_TRUE(c2.safe()) << c2.describe();
}

TEST(TensorQuantTest, Fp16UnderflowBoundary) {
  const float sub = std::ldexp(1.0f, -24);  // smallest fp16 subnormal
  HalfRangeCheck c = check_half_range(
      at::tensor({sub, std::ldexp(1.0f, -25), 1.5f * std::ldexp(1.0f, -25), 1e-30f}),
      Encoding::kFp16);
  // 2^-25 ties to even (0), 1.5·2^-25 rounds up to 2^-24, 1e-30 is far below.
  EXPECT_EQ(c.underflow, 2);
  EXPECT_EQ(c.nonzero, 4);
}

TEST(TensorQuantTest, Bf16RangeIsWide) {
  HalfRangeCheck c = check_half_range(at::tensor({70000.f, 1e-30f, -3e38f}), Encoding::kBf16);
  EXPECT_EQ(c.overflow, 0);
  EXPECT_EQ(c.underflow, 0);
  EXPECT_TRUE(c.safe()) << c.describe();
  HalfRangeCheck big =
      check_half_range(at::tensor({std::numeric_limits<float>::max(), 1.f}), Encoding::kBf16);
  EXPECT_EQ(big.overflow, 1);
  EXPECT_NE(big.describe().find("3.3895e+38"), std::string::npos) << big.describe();
  // bf16's smallest subnormal is 2^-133 ≈ 9.2e-41; 1e-41 rounds to 0, 1e-39 survives.
  HalfRangeCheck tiny = check_half_range(at::tensor({1e-41f, 1e-39f}), Encoding::kBf16);
  EXPECT_EQ(tiny.underflow, 1);
  EXPECT_FALSE(tiny.safe());
}

TEST(TensorQuantTest, SafeDescription) {
  HalfRangeCheck c = check_half_range(at::tensor({1.f, -2.f, 0.f}), Encoding::kFp16);
  EXPECT_TRUE(c.safe());
  EXPECT_EQ(c.describe().find('\n'), std::string::npos);
  EXPECT_NE(c.describe().find("fp16"), std::string::npos) << c.describe();
}

TEST(TensorQuantTest, HalfRejectsOtherEncodings) {
  ASSERT_THROWS_WITH(check_half_range(at::ones({2}), Encoding::kInt8), ConfigError, "int8");
  ASSERT_THROWS_WITH(to_half(at::ones({2}), Encoding::kFp32), ConfigError, "fp32");
}

TEST(TensorQuantTest, ToHalfRoundTrip) {
  at::manual_seed(5);
  at::Tensor w = at::randn({64, 32}) * 3;
  QuantizedTensor h = to_half(w, Encoding::kFp16);
  EXPECT_EQ(h.encoding, Encoding::kFp16);
  EXPECT_EQ(h.values.scalar_type(), at::kHalf);
  EXPECT_TRUE(at::equal(h.values, w.to(at::kHalf)));
  at::Tensor back = h.dequantize();
  EXPECT_EQ(back.scalar_type(), at::kFloat);
  // Round to nearest: error at most half an ulp, 2^-11 relative for normal fp16 values.
  at::Tensor normal = w.abs() >= std::ldexp(1.0, -14);
  at::Tensor rel_ok = (back - w).abs() <= w.abs() * std::ldexp(1.0, -11);
  EXPECT_TRUE((rel_ok | ~normal).all().item<bool>());
  EXPECT_TRUE(((back - w).abs() <= std::ldexp(1.0, -25)).logical_or(normal).all().item<bool>());

  QuantizedTensor b = to_half(w, Encoding::kBf16);
  EXPECT_EQ(b.encoding, Encoding::kBf16);
  EXPECT_EQ(b.values.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(((b.dequantize() - w).abs() <= w.abs() * std::ldexp(1.0, -8)).all().item<bool>());
}

TEST(TensorQuantTest, ToHalfDoesNotAlias) {
  at::Tensor w = at::ones({4}, at::kHalf);
  QuantizedTensor h = to_half(w, Encoding::kFp16);
  w.fill_(2);
  EXPECT_EQ(h.values[0].item<float>(), 1.0f);
}

}  // namespace
}  // namespace mcompress::quant
