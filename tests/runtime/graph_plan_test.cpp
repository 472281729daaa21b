// The Executor on graph models: the lowered plan (batchnorm folded, relu fused, skip
// connections over value slots) against the training GraphNetwork in eval mode.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>
#include <string>
#include <vector>

#include "mcompress/core/graph_network.h"
#include "mcompress/core/model.h"
#include "mcompress/core/zoo_graphs.h"
#include "mcompress/runtime/executor.h"
#include "test_support.h"

namespace mcompress {
namespace {

// A model whose batchnorm running statistics are far from (0, 1), so that folding them into
// the convolutions is tested rather than a no-op.
Model with_trained_looking_batchnorms(const std::string& name, uint64_t seed) {
  Model m = Model::initialize(zoo_graph(name), seed);
  torch::manual_seed(seed);
  for (const auto& info : m.tensor_infos()) {
    at::Tensor& t = m.tensor(info.name);
    if (info.role == TensorRole::kRunningMean) t.copy_(torch::randn_like(t) * 0.5);
    if (info.role == TensorRole::kRunningVar) t.copy_(torch::rand_like(t) * 2 + 0.1);
    if (info.role == TensorRole::kBias) t.copy_(torch::randn_like(t) * 0.1);
  }
  return m;
}

at::Tensor network_logits(const Model& m, const at::Tensor& x) {
  GraphNetwork net(m.graph());
  net->load(m);
  net->eval();
  torch::NoGradGuard no_grad;
  return net->forward(x);
}

// max |got - want| <= tol * max |want|.
void expect_close(const at::Tensor& got, const at::Tensor& want, double tol) {
  ASSERT_EQ(got.sizes(), want.sizes());
  const double diff = (got - want).abs().max().item<double>();
  const double scale = want.abs().max().item<double>();
  EXPECT_LE(diff, tol * scale) << "max difference " << diff << ", scale " << scale;
}

class GraphExecutorTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GraphExecutorTest, LogitsEqualTheNetworkInEvalModeAtBatch3And1) {
  const Model m = with_trained_looking_batchnorms(GetParam(), 4);
  runtime::Executor exec(m);
  torch::manual_seed(9);
  const auto x = torch::rand({3, 1, 28, 28});
  // 1e-5 relative: the folded weights round differently from batchnorm applied after.
  expect_close(exec.run(x), network_logits(m, x), 1e-5);
  expect_close(exec.run(x.slice(0, 0, 1)), network_logits(m, x.slice(0, 0, 1)), 1e-5);
}

TEST_P(GraphExecutorTest, ThePlanFoldsEveryBatchnormIntoItsConvolution) {
  const Model m = Model::initialize(zoo_graph(GetParam()), 0);
  runtime::Executor exec(m);
  int64_t folded = 0;
  for (const auto& s : exec.plan()) {
    EXPECT_EQ(s.kernel, "fp32-dense");
    EXPECT_EQ(s.op.find("BatchNormalization") != std::string::npos, s.note == "batchnorm folded")
        << s.layers;
    folded += s.note == "batchnorm folded";
    EXPECT_NE(s.op, "BatchNormalization") << s.layers << " runs unfolded";
  }
  EXPECT_GT(folded, 0);
  EXPECT_EQ(exec.int8_layers(), 0);
  EXPECT_EQ(exec.input_shape(), (std::vector<int64_t>{1, 28, 28}));
  EXPECT_EQ(exec.num_classes(), 10);
}

INSTANTIATE_TEST_SUITE_P(Zoo, GraphExecutorTest, ::testing::Values("resnet18", "mobilenetv2"));

// Calibration sees the input and every step's value except where a step passes its input's
// qparams through (GlobalAveragePool and Flatten in resnet18).
TEST(GraphExecutorObservedTest, ReportsTheInputAndEveryValueCalibrationNeedsOnce) {
  const Model m = Model::initialize(zoo_graph("resnet18"), 1);
  runtime::Executor exec(m);
  std::vector<std::string> seen;
  const auto x = torch::rand({2, 1, 28, 28});
  const auto out =
      exec.run_observed(x, [&](const std::string& key, const at::Tensor&) { seen.push_back(key); });
  size_t passthrough = 0;
  for (const auto& s : exec.plan()) passthrough += s.op == "GlobalAveragePool" || s.op == "Flatten";
  EXPECT_EQ(passthrough, 2u);
  ASSERT_EQ(seen.size(), exec.plan().size() + 1 - passthrough);
  EXPECT_EQ(seen.front(), "input");
  EXPECT_EQ(seen.back(), m.graph().outputs[0]);
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), seen.size());
  EXPECT_TRUE(torch::equal(out, exec.run(x)));
}

TEST(GraphExecutorObservedTest, EvaluateRunsAGraphModel) {
  const Model m = Model::initialize(zoo_graph("mobilenetv2"), 1);
  runtime::Executor exec(m);
  const Dataset data = testing::block_images(40, 3);
  const auto r = runtime::evaluate(exec, data, 16);
  EXPECT_EQ(r.samples, 40);
  EXPECT_GE(r.accuracy, 0.0);
  EXPECT_GT(r.loss, 0.0);
}

}  // namespace
}  // namespace mcompress
