// The int8 paths of the runtime against its own fp32 path on the same (int8-rounded) weights.

#include <torch/torch.h>

#include <gtest/gtest.h>

#include "mcompress/core/error.h"
#include "mcompress/core/zoo.h"
#include "mcompress/runtime/executor.h"
#include "runtime_support.h"
#include "test_support.h"

namespace mcompress {
namespace {

using testing::run_with;

// Normalised mean squared error of int8 logits against fp32 logits: mse(a, b) / mse(b, 0).
// Activation rounding to 8 bits over a few layers lands near 1e-4; 1e-2 would mean a broken
// scale or zero point.
constexpr double kMaxNmseInt8Logits = 1e-2;

double nmse(const at::Tensor& got, const at::Tensor& ref) {
  return (got - ref).pow(2).mean().item<double>() / ref.pow(2).mean().item<double>();
}

// Rounds every conv/linear weight to symmetric per-channel int8, as the quant stage does.
void quantize_weights(Model& m, bool linear_only) {
  for (const auto& info : m.tensor_infos()) {
    const auto& layer = m.spec().layers[static_cast<size_t>(info.layer)];
    const bool linear = layer.type == LayerType::kLinear;
    const bool conv = info.shape.size() == 4;
    if (info.role != TensorRole::kWeight || !(linear || (!linear_only && conv))) continue;
    auto& w = m.tensor(info.name);
    const auto scale = w.reshape({w.size(0), -1}).abs().amax(1) / 127;
    QuantizedTensor q;
    q.encoding = Encoding::kInt8;
    q.scale = scale;
    q.zero_point = torch::zeros({w.size(0)}, torch::kInt);
    q.axis = 0;
    q.values = at::quantize_per_channel(w, scale.to(torch::kDouble),
                                        torch::zeros({w.size(0)}, torch::kLong), 0, torch::kQInt8)
                   .int_repr();
    w.copy_(q.dequantize());
    m.quant.tensors[info.name] = q;
  }
}

// Min/max activation ranges from the fp32 plan: the simplest calibration.
void calibrate_minmax(Model& m, const at::Tensor& x) {
  runtime::ExecutorOptions o;
  o.policy = runtime::KernelPolicy::kFp32;
  runtime::Executor exec(m, o);
  exec.run_observed(x, [&](const std::string& key, const at::Tensor& v) {
    const double lo = std::min(0.0, v.min().item<double>());
    const double hi = std::max(0.0, v.max().item<double>());
    const double scale = std::max((hi - lo) / 255.0, 1e-8);
    m.quant.activations[key] = {scale, static_cast<int64_t>(std::lround(-lo / scale)), "minmax"};
  });
}

class StaticInt8Test : public ::testing::TestWithParam<std::string> {};

TEST_P(StaticInt8Test, LogitsMatchFp32OnTheSameWeights) {
  Model m = Model::initialize(zoo_spec(GetParam()), 11);
  quantize_weights(m, false);
  m.quant.mode = "int8-static";
  torch::manual_seed(3);
  const auto x = torch::rand({32, 1, 28, 28});
  calibrate_minmax(m, x);
  const auto ref = run_with(m, runtime::KernelPolicy::kFp32, x);
  const auto got = run_with(m, runtime::KernelPolicy::kInt8, x);
  EXPECT_LT(nmse(got, ref), kMaxNmseInt8Logits);
  runtime::ExecutorOptions o;
  o.policy = runtime::KernelPolicy::kInt8;
  runtime::Executor exec(m, o);
  EXPECT_GT(exec.int8_layers(), 0);
  // One quantize on the way in (after any float-or-quantized steps such as flatten), one
  // dequantize for the logits: the int8 chain is not broken in between.
  int64_t quantizes = 0;
  for (const auto& s : exec.plan()) quantizes += s.op == "quantize";
  EXPECT_EQ(quantizes, 1);
  EXPECT_EQ(exec.plan().back().op, "dequantize");
}

INSTANTIATE_TEST_SUITE_P(Zoo, StaticInt8Test,
                         ::testing::Values("mlp", "lenet5", "convnet", "resnet8"));

TEST(DynamicInt8Test, LinearLayersRunDynamicKernels) {
  Model m = Model::initialize(zoo_spec("mlp"), 5);
  quantize_weights(m, true);
  m.quant.mode = "int8-dynamic";
  torch::manual_seed(4);
  const auto x = torch::rand({16, 1, 28, 28});
  const auto ref = run_with(m, runtime::KernelPolicy::kFp32, x);
  const auto got = run_with(m, runtime::KernelPolicy::kInt8, x);
  EXPECT_LT(nmse(got, ref), kMaxNmseInt8Logits);
  runtime::ExecutorOptions o;
  o.policy = runtime::KernelPolicy::kInt8;
  runtime::Executor exec(m, o);
  EXPECT_EQ(exec.int8_layers(), 3);
  for (const auto& s : exec.plan()) EXPECT_NE(s.op, "quantize");  // float in, float out
}

TEST(Int8PolicyTest, Fp32PolicyAndAutoPolicy) {
  Model m = Model::initialize(zoo_spec("lenet5"), 5);
  quantize_weights(m, false);
  m.quant.mode = "int8-static";
  const auto x = torch::rand({8, 1, 28, 28});
  calibrate_minmax(m, x);
  runtime::ExecutorOptions o;
  o.policy = runtime::KernelPolicy::kFp32;
  EXPECT_EQ(runtime::Executor(m, o).int8_layers(), 0);
  o.policy = runtime::KernelPolicy::kAuto;
  o.batch_size = 8;
  runtime::Executor exec(m, o);
  // Whatever auto chose, every int8 candidate was timed both ways and the output is sound.
  int timed = 0;
  for (const auto& s : exec.plan()) timed += s.fp32_ms > 0 && s.int8_ms > 0;
  EXPECT_GT(timed, 0);
  EXPECT_NE(exec.plan_note().find("at batch 8"), std::string::npos) << exec.plan_note();
  EXPECT_LT(nmse(exec.run(x), run_with(m, runtime::KernelPolicy::kFp32, x)), kMaxNmseInt8Logits);
  ASSERT_THROWS_WITH(runtime::parse_kernel_policy("fastest"), ConfigError,
                     "accepted: auto, int8, fp32");
}

TEST(Int8PolicyTest, LayersWithoutQParamsFallBackToFp32WithAReason) {
  Model m = Model::initialize(zoo_spec("mlp"), 5);
  quantize_weights(m, false);
  m.quant.mode = "int8-static";
  calibrate_minmax(m, torch::rand({8, 1, 28, 28}));
  m.quant.activations.erase("5");  // the last linear's output
  runtime::ExecutorOptions o;
  o.policy = runtime::KernelPolicy::kInt8;
  runtime::Executor exec(m, o);
  EXPECT_EQ(exec.int8_layers(), 2);
  bool saw_reason = false;
  for (const auto& s : exec.plan())
    saw_reason |= s.note.find("no calibrated qparams") != std::string::npos;
  EXPECT_TRUE(saw_reason);
}

}  // namespace
}  // namespace mcompress
