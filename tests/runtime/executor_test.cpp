#include <torch/torch.h>

#include <gtest/gtest.h>

#include "mcompress/core/error.h"
#include "mcompress/core/zoo.h"
#include "mcompress/runtime/executor.h"
#include "reference_network.h"
#include "test_support.h"

namespace mcompress {
namespace {

// Folding batchnorm reorders float operations; outputs of O(10) agree to ~1e-5 relative.
constexpr double kMaxAbsErrFp32Plan = 1e-4;

// A model whose batchnorm statistics are not the identity, so folding is really exercised.
Model model_with_random_stats(const std::string& zoo_name, uint64_t seed) {
  Model model = Model::initialize(zoo_spec(zoo_name), seed);
  torch::manual_seed(seed + 1);
  for (const auto& info : model.tensor_infos()) {
    auto& t = model.tensor(info.name);
    if (info.role == TensorRole::kRunningMean) t.copy_(torch::randn_like(t) * 0.1);
    if (info.role == TensorRole::kRunningVar) t.copy_(torch::rand_like(t) + 0.5);
    const bool bn_affine = info.name.find("bn") != std::string::npos &&
                           (info.role == TensorRole::kWeight || info.role == TensorRole::kBias);
    if (bn_affine || info.role == TensorRole::kBias) {
      t.copy_(torch::randn_like(t) * 0.1 + (info.role == TensorRole::kWeight ? 1.0 : 0.0));
    }
  }
  return model;
}

class ExecutorZooTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ExecutorZooTest, MatchesTorchModulesInEvalMode) {
  Model model = model_with_random_stats(GetParam(), 3);
  testing::ReferenceNetwork net(model.spec());
  net->load(model);
  net->eval();
  torch::manual_seed(5);
  const auto x = torch::rand({7, 1, 28, 28});
  torch::Tensor expected;
  {
    torch::NoGradGuard no_grad;
    expected = net->forward(x);
  }
  runtime::Executor exec(model);
  const auto got = exec.run(x);
  ASSERT_EQ(got.sizes(), expected.sizes());
  EXPECT_LT((got - expected).abs().max().item<double>(), kMaxAbsErrFp32Plan);
}

INSTANTIATE_TEST_SUITE_P(Zoo, ExecutorZooTest,
                         ::testing::Values("mlp", "lenet5", "convnet", "resnet8", "mlp-small",
                                           "lenet5-small"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (auto& c : name) c = std::isalnum(c) ? c : '_';
                           return name;
                         });

TEST(ExecutorTest, FoldsBatchnormAndFusesRelu) {
  runtime::Executor exec(Model::initialize(zoo_spec("convnet"), 1));
  const auto& plan = exec.plan();
  ASSERT_FALSE(plan.empty());
  EXPECT_EQ(plan[0].op, "Conv+BatchNormalization+Relu");
  EXPECT_EQ(plan[0].layers, "0..2");
  EXPECT_EQ(plan[0].kernel, "fp32-dense");
  EXPECT_EQ(plan[0].note, "batchnorm folded");
  for (const auto& step : plan) EXPECT_NE(step.op, "Dropout");  // identity at inference: no step
}

TEST(ExecutorTest, RejectsInputOfWrongShape) {
  runtime::Executor exec(Model::initialize(zoo_spec("mlp"), 1));
  ASSERT_THROWS_WITH(exec.run(torch::rand({2, 1, 27, 28})), ModelError,
                     "the model expects [N, 1, 28, 28]");
}

TEST(ExecutorTest, EvaluateCountsCorrectPredictions) {
  Model model = Model::initialize(zoo_spec("mlp-small"), 2);
  runtime::Executor exec(model);
  Dataset data;
  data.x = torch::rand({50, 1, 28, 28});
  data.source = "synthetic";
  data.y = exec.run(data.x).argmax(1);  // labels the model predicts: accuracy must be 1
  const auto r = runtime::evaluate(exec, data, 16);
  EXPECT_EQ(r.samples, 50);
  EXPECT_DOUBLE_EQ(r.accuracy, 1.0);
  EXPECT_GT(r.loss, 0.0);
}

TEST(ExecutorTest, EvaluateRejectsEmptyAndMismatchedData) {
  runtime::Executor exec(Model::initialize(zoo_spec("mlp-small"), 2));
  Dataset empty;
  empty.x = torch::zeros({0, 1, 28, 28});
  empty.y = torch::zeros({0}, torch::kLong);
  empty.source = "empty.h5";
  ASSERT_THROWS_WITH(runtime::evaluate(exec, empty), DataError, "is empty");
  Dataset wrong;
  wrong.x = torch::zeros({4, 3, 32, 32});
  wrong.y = torch::zeros({4}, torch::kLong);
  wrong.source = "cifar.h5";
  ASSERT_THROWS_WITH(runtime::evaluate(exec, wrong), DataError, "cifar.h5");
}

TEST(ExecutorTest, LatencyIsPositive) {
  runtime::Executor exec(Model::initialize(zoo_spec("mlp-small"), 2));
  const auto l = runtime::measure_latency(exec, 4, 0.01);
  EXPECT_GE(l.runs, 5);
  EXPECT_GT(l.median_ms, 0.0);
  EXPECT_GE(l.p90_ms, l.median_ms);
}

}  // namespace
}  // namespace mcompress
