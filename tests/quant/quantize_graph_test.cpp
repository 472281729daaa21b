// Quantization of graph models: int8-static through residual and inverted-residual adds with
// int8 kernels end to end, int8-dynamic on Gemm, and the quantized graph model in the file.

#include <torch/torch.h>

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "mcompress/core/model_file.h"
#include "mcompress/core/zoo_graphs.h"
#include "mcompress/quant/qat.h"
#include "mcompress/quant/quantize.h"
#include "mcompress/runtime/executor.h"
#include "test_support.h"

namespace mcompress::quant {
namespace {

// max |got - want| / max |want|.
double relative_error(const at::Tensor& got, const at::Tensor& want) {
  return (got - want).abs().max().item<double>() / want.abs().max().item<double>();
}

Model quantized_graph(const std::string& name, QuantMode mode) {
  Model m = Model::initialize(zoo_graph(name), 3);
  QuantizeOptions o;
  o.mode = mode;
  o.calib_batches = 2;
  o.calib_batch_size = 16;
  const Dataset calib = testing::block_images(32, 5);
  quantize_model(m, o, calib, calib);
  return m;
}

runtime::Executor executor(const Model& m, runtime::KernelPolicy policy) {
  runtime::ExecutorOptions eo;
  eo.policy = policy;
  eo.batch_size = 8;
  return runtime::Executor(m, eo);
}

class GraphInt8StaticTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GraphInt8StaticTest, EveryConvAndAddRunsInt8WithOneQuantizeAndOneDequantize) {
  const Model m = quantized_graph(GetParam(), QuantMode::kInt8Static);
  const auto exec = executor(m, runtime::KernelPolicy::kInt8);
  int64_t quantize = 0, dequantize = 0, adds = 0;
  for (const auto& s : exec.plan()) {
    quantize += s.op == "quantize";
    dequantize += s.op == "dequantize";
    if (s.op.rfind("Conv", 0) == 0 || s.op.rfind("Add", 0) == 0 || s.op.rfind("Gemm", 0) == 0) {
      EXPECT_EQ(s.kernel, "int8-static") << s.layers << " (" << s.op << "): " << s.note;
    }
    adds += s.op.rfind("Add", 0) == 0;
  }
  // No fp32 island anywhere: the input is quantized once and the logits dequantized once.
  EXPECT_EQ(quantize, 1);
  EXPECT_EQ(dequantize, 1);
  EXPECT_GT(adds, 0);
}

TEST_P(GraphInt8StaticTest, Int8LogitsFollowTheFp32OnesAtBatch5And1) {
  const Model m = quantized_graph(GetParam(), QuantMode::kInt8Static);
  const auto int8 = executor(m, runtime::KernelPolicy::kInt8);
  const auto fp32 = executor(m, runtime::KernelPolicy::kFp32);
  const Dataset data = testing::block_images(5, 11);
  // 0.05 of the logit range (measured: 0.013 for resnet18, 0.004 for mobilenetv2): per-tensor
  // uint8 activations through ~20 layers; a wrong scale at an Add is off by far more.
  EXPECT_LT(relative_error(int8.run(data.x), fp32.run(data.x)), 0.05);
  EXPECT_LT(relative_error(int8.run(data.x.slice(0, 0, 1)), fp32.run(data.x.slice(0, 0, 1))), 0.05);
}

INSTANTIATE_TEST_SUITE_P(Zoo, GraphInt8StaticTest, ::testing::Values("resnet18", "mobilenetv2"));

// QAT on a graph model: GraphNetwork's taps fake-quantize exactly the activations the runtime
// calibrates (so every key gets a QAT range and none is calibrated after the fact), and the
// converted model runs every Conv, Add and Gemm int8.
TEST(GraphQatTest, MobilenetTrainsThroughFakeQuantizationAndConvertsToInt8) {
  Model m = Model::initialize(zoo_graph("mobilenetv2"), 3);
  QatOptions o;
  o.train.epochs = 1;
  o.train.batch_size = 16;
  o.train.progress = false;
  o.calib_batches = 2;
  o.calib_batch_size = 16;
  const Dataset data = testing::block_images(32, 5);
  const auto report = qat_model(m, o, data, Dataset{});
  EXPECT_EQ(m.quant.mode, "int8-static");
  for (const auto& w : report.warnings) {
    EXPECT_EQ(w.find("activations without QAT ranges"), std::string::npos) << w;
  }
  std::set<std::string> observed;
  executor(m, runtime::KernelPolicy::kFp32)
      .run_observed(data.x.slice(0, 0, 2),
                    [&](const std::string& key, const at::Tensor&) { observed.insert(key); });
  std::set<std::string> ranges;
  for (const auto& [key, q] : m.quant.activations) {
    ranges.insert(key);
    EXPECT_EQ(q.observer, "qat-moving-average") << key;
  }
  EXPECT_EQ(ranges, observed);
  const auto exec = executor(m, runtime::KernelPolicy::kInt8);
  int64_t quantize = 0;
  for (const auto& s : exec.plan()) {
    quantize += s.op == "quantize";
    if (s.op.rfind("Conv", 0) == 0 || s.op.rfind("Add", 0) == 0 || s.op.rfind("Gemm", 0) == 0) {
      EXPECT_EQ(s.kernel, "int8-static") << s.layers << " (" << s.op << "): " << s.note;
    }
  }
  EXPECT_EQ(quantize, 1);
  EXPECT_LT(relative_error(exec.run(data.x), executor(m, runtime::KernelPolicy::kFp32).run(data.x)),
            0.05);
}

TEST(GraphInt8DynamicTest, TheClassifierGemmRunsLinearDynamic) {
  const Model m = quantized_graph("resnet18", QuantMode::kInt8Dynamic);
  EXPECT_EQ(m.quant.tensors.size(), 1U);  // fc.weight: dynamic quantization covers Linear only
  EXPECT_EQ(m.quant.tensors.count("fc.weight"), 1U);
  const auto exec = executor(m, runtime::KernelPolicy::kInt8);
  EXPECT_EQ(exec.int8_layers(), 1);
  const Dataset data = testing::block_images(4, 2);
  EXPECT_LT(relative_error(exec.run(data.x), executor(m, runtime::KernelPolicy::kFp32).run(data.x)),
            0.05);
}

TEST(GraphInt8FileTest, AQuantizedGraphModelLoadsToTheSameInt8Logits) {
  const Model m = quantized_graph("resnet18", QuantMode::kInt8Static);
  testing::TempDir dir;
  const std::string path = dir.file("q.h5");
  save_model(m, path);
  const Model loaded = load_model(path);
  EXPECT_EQ(loaded.quant.mode, "int8-static");
  EXPECT_EQ(loaded.quant.activations.size(), m.quant.activations.size());
  const Dataset data = testing::block_images(3, 8);
  EXPECT_TRUE(torch::equal(executor(loaded, runtime::KernelPolicy::kInt8).run(data.x),
                           executor(m, runtime::KernelPolicy::kInt8).run(data.x)));
}

}  // namespace
}  // namespace mcompress::quant
