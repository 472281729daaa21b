// The weights inference kernels compute with (core/kernel_weights.h): the batchnorm fold, which
// the runtime's plan and the ONNX exporter share, and the int8 codes an int8 kernel packs.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "mcompress/core/error.h"
#include "mcompress/core/kernel_weights.h"
#include "mcompress/core/lowering.h"
#include "mcompress/core/model.h"
#include "mcompress/core/zoo.h"
#include "test_support.h"

namespace mcompress {
namespace {

// convnet's first step, Conv+BatchNormalization+Relu, with batchnorm statistics far from the
// identity so that the fold really changes the weights.
struct ConvBn {
  Model model = Model::initialize(zoo_spec("convnet"), 4);
  GraphInfo info = model.graph().analyze();
  LoweredStep step = lower(model.graph()).front();

  ConvBn() {
    torch::manual_seed(9);
    for (const char* role : {"weight", "bias", "running_mean"}) {
      model.tensor(std::string("1.") + role).copy_(torch::randn({32}));
    }
    model.tensor("1.running_var").copy_(torch::rand({32}) + 0.5);
  }
};

TEST(KernelWeightsTest, TheFoldedConvolutionIsTheConvolutionThenTheEvalBatchnorm) {
  ConvBn c;
  ASSERT_EQ(c.step.op, "Conv+BatchNormalization+Relu");
  const FoldedWeights w = folded_weights(c.model, c.info, c.step);
  const auto x = torch::randn({3, 1, 28, 28});
  const auto& t = [&](const char* name) { return c.model.tensor(name); };
  const auto reference = torch::batch_norm(
      torch::conv2d(x, t("0.weight"), t("0.bias"), 1, 1), t("1.weight"), t("1.bias"),
      t("1.running_mean"), t("1.running_var"), /*training=*/false, 0.1, 1e-5, false);
  // Folding reorders float operations: outputs of O(1) agree to 1e-5 relative.
  EXPECT_TRUE(torch::allclose(torch::conv2d(x, w.weight, w.bias, 1, 1), reference, 1e-5, 1e-5));
}

TEST(KernelWeightsTest, AStepWithoutBatchnormKeepsItsTensorsAndAMissingBiasIsZeros) {
  const Model m = Model::initialize(zoo_spec("mlp"), 1);
  const LoweredStep first = lower(m.graph())[1];  // after Flatten: Gemm+Relu
  ASSERT_EQ(first.op, "Gemm+Relu");
  const FoldedWeights w = folded_weights(m, m.graph().analyze(), first);
  EXPECT_TRUE(torch::equal(w.weight, m.tensor("1.weight")));
  EXPECT_TRUE(torch::equal(w.bias, m.tensor("1.bias")));
}

TEST(KernelWeightsTest, AStepWithoutWeightsOrInt8CodesIsAModelErrorNamingIt) {
  const Model m = Model::initialize(zoo_spec("mlp"), 1);
  const GraphInfo info = m.graph().analyze();
  const std::vector<LoweredStep> steps = lower(m.graph());
  ASSERT_EQ(steps[0].op, "Flatten");
  testing::expect_model_error([&] { folded_weights(m, info, steps[0]); },
                              {"node '0'", "(Flatten)", "not a Conv or Gemm"});
  testing::expect_model_error([&] { int8_step_weights(m, info, steps[1]); },
                              {"tensor '1.weight'", "no int8 codes"});
}

TEST(KernelWeightsTest, StoredInt8CodesAreReusedExactly) {
  const auto weight = torch::randn({4, 6});
  QuantizedTensor stored;
  stored.encoding = Encoding::kInt8;
  stored.values = torch::randint(-127, 128, {4, 6}, torch::kChar);
  stored.scale = torch::rand({4}) + 0.01;
  stored.zero_point = torch::zeros({4}, torch::kInt);
  stored.axis = 0;
  const auto q = int8_kernel_weight("w", weight, &stored, true);
  EXPECT_TRUE(torch::equal(q.int_repr(), stored.values));
  EXPECT_TRUE(torch::equal(q.q_per_channel_scales().to(torch::kFloat), stored.scale));
}

TEST(KernelWeightsTest, WithoutStoredCodesTheCodesAreSymmetricPerChannel) {
  const auto weight = torch::randn({4, 6});
  const auto q = int8_kernel_weight("w", weight, nullptr, true);
  EXPECT_EQ(q.qscheme(), torch::kPerChannelAffine);
  EXPECT_TRUE(torch::equal(q.q_per_channel_zero_points(), torch::zeros({4}, torch::kLong)));
  // Each channel's largest magnitude is code ±127; every value within half a step.
  EXPECT_EQ(q.int_repr().abs().amax(1).min().item<int>(), 127);
  const auto step = q.q_per_channel_scales().to(torch::kFloat).unsqueeze(1);
  EXPECT_TRUE(((q.dequantize() - weight).abs() <= step / 2 + 1e-6).all().item<bool>());
}

TEST(KernelWeightsTest, MalformedStoredCodesAreAModelErrorNamingTheTensor) {
  QuantizedTensor stored;
  stored.encoding = Encoding::kInt8;
  stored.values = torch::zeros({4, 6}, torch::kChar);
  stored.scale = torch::ones({4});
  stored.zero_point = torch::full({4}, 300, torch::kInt);
  stored.axis = 0;
  const auto weight = torch::zeros({4, 6});
  const auto quantize = [&] { int8_kernel_weight("fc.weight", weight, &stored, true); };
  testing::expect_model_error(quantize, {"'fc.weight'", "zero point outside int8"});
  stored.zero_point = torch::zeros({4}, torch::kInt);
  stored.axis = 1;
  testing::expect_model_error(quantize, {"'fc.weight'", "axis 1"});
  stored.axis = 0;
  stored.scale = torch::ones({3});
  testing::expect_model_error(quantize, {"'fc.weight'", "3 scales"});
}

}  // namespace
}  // namespace mcompress
