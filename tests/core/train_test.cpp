#include <torch/torch.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "mcompress/core/error.h"
#include "mcompress/core/train.h"
#include "mcompress/core/trainable_network.h"
#include "mcompress/core/zoo.h"
#include "reference_network.h"
#include "test_support.h"

namespace mcompress {
namespace {

TrainOptions quick_options(uint64_t seed) {
  TrainOptions o;
  o.epochs = 2;
  o.batch_size = 32;
  o.lr = 3e-3;
  o.seed = seed;
  o.progress = false;
  return o;
}

class TrainTest : public ::testing::Test {
 protected:
  void SetUp() override { at::set_num_threads(1); }
};

TEST_F(TrainTest, LearnsASeparableProblem) {
  const auto data = testing::block_images(400, 1);
  const auto val = testing::block_images(100, 2);
  Model model = Model::initialize(zoo_spec("lenet5-small"), 0);
  const auto result = train_model(model, data, val, quick_options(0));
  ASSERT_EQ(result.epochs.size(), 2u);
  EXPECT_GT(result.epochs.back().val_accuracy, 0.9);
  EXPECT_LT(result.epochs.back().train_loss, result.epochs.front().train_loss);
}

TEST_F(TrainTest, SameSeedSameThreadsGiveBitwiseIdenticalWeights) {
  const auto data = testing::block_images(200, 1);
  const auto val = testing::block_images(50, 2);
  auto run = [&](uint64_t seed) {
    Model model = Model::initialize(zoo_spec("convnet"), seed);
    auto o = quick_options(seed);
    o.epochs = 1;
    train_model(model, data.slice(0, 96), val, o);
    return model;
  };
  const Model a = run(7), b = run(7), c = run(8);
  bool any_different = false;
  for (const auto& [name, t] : a.tensors()) {
    EXPECT_TRUE(torch::equal(t, b.tensor(name))) << name;
    any_different |= !torch::equal(t, c.tensor(name));
  }
  EXPECT_TRUE(any_different) << "a different seed must give different weights";
}

TEST_F(TrainTest, HooksSeeEveryStepAndEpoch) {
  const auto data = testing::block_images(64, 1);
  Model model = Model::initialize(zoo_spec("mlp-small"), 0);
  int64_t steps = 0, epochs = 0, losses = 0;
  TrainHooks hooks;
  hooks.loss = [&](const at::Tensor& logits, const at::Tensor&, const at::Tensor& y) {
    ++losses;
    return torch::cross_entropy_loss(logits, y);
  };
  hooks.after_step = [&](TrainableNetwork&, int64_t step) { steps = step; };
  hooks.after_epoch = [&](TrainableNetwork&, int64_t epoch) { epochs = epoch; };
  train_model(model, data, Dataset{}, quick_options(0), hooks);
  EXPECT_EQ(steps, 4);  // 2 epochs x 64/32 batches
  EXPECT_EQ(losses, 4);
  EXPECT_EQ(epochs, 2);
}

TEST_F(TrainTest, BeforeBatchSeesTheRowsOfEachBatch) {
  // The indices name exactly the rows the loss sees: x and y of the batch are those rows.
  const auto data = testing::block_images(70, 1);
  Model model = Model::initialize(zoo_spec("mlp-small"), 0);
  at::Tensor current;
  int64_t batches = 0;
  std::vector<int64_t> seen;
  TrainHooks hooks;
  hooks.before_batch = [&](const at::Tensor& indices) { current = indices; };
  hooks.loss = [&](const at::Tensor& logits, const at::Tensor& x, const at::Tensor& y) {
    ++batches;
    EXPECT_TRUE(x.equal(data.x.index_select(0, current)));
    EXPECT_TRUE(y.equal(data.y.index_select(0, current)));
    const auto rows = current.contiguous();
    seen.insert(seen.end(), rows.data_ptr<int64_t>(), rows.data_ptr<int64_t>() + rows.numel());
    return torch::cross_entropy_loss(logits, y);
  };
  train_model(model, data, Dataset{}, quick_options(0), hooks);
  EXPECT_EQ(batches, 6);  // 2 epochs x ceil(70/32)
  ASSERT_EQ(seen.size(), 140u);
  std::sort(seen.begin(), seen.end());
  for (int64_t i = 0; i < 140; ++i)
    EXPECT_EQ(seen[static_cast<size_t>(i)], i / 2);  // every row once per epoch
}

TEST_F(TrainTest, EarlyStopRestoresTheBestEpoch) {
  const auto data = testing::block_images(64, 1);
  const auto val = testing::block_images(64, 3);
  Model model = Model::initialize(zoo_spec("mlp-small"), 0);
  auto o = quick_options(0);
  o.epochs = 30;
  o.early_stop_patience = 2;
  o.lr = 0.05;  // large enough that validation accuracy plateaus early
  const auto r = train_model(model, data, val, o);
  EXPECT_LE(r.best_epoch, static_cast<int64_t>(r.epochs.size()));
  if (r.stopped_early) {
    EXPECT_EQ(static_cast<int64_t>(r.epochs.size()), r.best_epoch + 2);
  }
  const auto net = make_network(model);
  EXPECT_DOUBLE_EQ(evaluate_network(*net, val).accuracy,
                   r.epochs[static_cast<size_t>(r.best_epoch - 1)].val_accuracy);
}

TEST_F(TrainTest, FrozenBatchnormKeepsRunningStatistics) {
  const auto data = testing::block_images(64, 1);
  auto run = [&](bool freeze) {
    Model model = Model::initialize(zoo_spec("convnet"), 0);
    auto o = quick_options(0);
    o.epochs = 1;
    o.freeze_batchnorm = freeze;
    train_model(model, data, Dataset{}, o);
    return model;
  };
  const Model frozen = run(true), free = run(false);
  // "1" is the convnet's first batchnorm; freshly initialised stats are mean 0, var 1.
  EXPECT_TRUE(torch::equal(frozen.tensor("1.running_mean"), torch::zeros({32})));
  EXPECT_TRUE(torch::equal(frozen.tensor("1.running_var"), torch::ones({32})));
  EXPECT_FALSE(torch::equal(free.tensor("1.running_mean"), torch::zeros({32})));
  // The affine parameters still train.
  EXPECT_FALSE(torch::equal(frozen.tensor("1.weight"), torch::ones({32})));
}

// A pruned weight must stay exactly zero through every optimizer the loop offers: SGD momentum
// and Adam's moments would otherwise move it off zero, and weight decay pulls on it too.
TEST_F(TrainTest, PruningMasksKeepWeightsExactlyZero) {
  const auto data = testing::block_images(96, 1);
  for (const auto kind : {OptimizerKind::kSgd, OptimizerKind::kAdam}) {
    Model model = Model::initialize(zoo_spec("lenet5-small"), 3);
    const std::string name = model.tensor_infos().front().name;  // first conv weight
    torch::manual_seed(1);
    const auto mask = torch::rand(model.tensor(name).sizes()) > 0.5;
    model.set_mask(name, mask);
    ASSERT_EQ(model.tensor(name).masked_select(mask.logical_not()).abs().sum().item<float>(), 0);
    auto o = quick_options(3);
    o.optimizer = kind;
    o.momentum = 0.9;
    o.weight_decay = 1e-2;
    o.epochs = 2;
    const auto before = model.tensor(name).clone();
    train_model(model, data, Dataset{}, o);
    const auto& w = model.tensor(name);
    EXPECT_EQ(w.masked_select(mask.logical_not()).abs().max().item<float>(), 0.0f)
        << to_string(kind);
    EXPECT_FALSE(torch::equal(w.masked_select(mask), before.masked_select(mask)))
        << "the kept weights must still train";
  }
  Model model = Model::initialize(zoo_spec("lenet5-small"), 3);
  ASSERT_THROWS_WITH(model.set_mask("0.weight", torch::ones({2, 2}, torch::kBool)), ModelError,
                     "mask for '0.weight'");
}

// A fine-tuning run that only makes things worse (a learning rate far too high) must hand back
// the weights it started from when the start competes on validation.
TEST_F(TrainTest, ValidateStartKeepsTheStartingWeightsWhenNoEpochBeatsThem) {
  const auto data = testing::block_images(200, 1);
  const auto val = testing::block_images(100, 2);
  Model model = Model::initialize(zoo_spec("lenet5-small"), 0);
  train_model(model, data, val, quick_options(0));
  const Model start = model.clone();
  auto o = quick_options(0);
  o.optimizer = OptimizerKind::kSgd;
  o.lr = 50.0;
  o.validate_start = true;
  const auto result = train_model(model, data, val, o);
  ASSERT_EQ(result.best_epoch, 0);
  for (const auto& [name, t] : start.tensors())
    EXPECT_TRUE(torch::equal(t, model.tensor(name))) << name;
  // Without it, the loop ends with one of its own epochs.
  o.validate_start = false;
  Model again = start.clone();
  EXPECT_GE(train_model(again, data, val, o).best_epoch, 1);
}

TEST_F(TrainTest, RejectsBadOptionsAndEmptyData) {
  Model model = Model::initialize(zoo_spec("mlp-small"), 0);
  auto o = quick_options(0);
  o.lr = -1;
  ASSERT_THROWS_WITH(train_model(model, testing::block_images(8, 1), Dataset{}, o), ConfigError,
                     "lr must be > 0");
  Dataset empty;
  empty.x = torch::zeros({0, 1, 28, 28});
  empty.y = torch::zeros({0}, torch::kLong);
  empty.source = "empty.h5";
  ASSERT_THROWS_WITH(train_model(model, empty, Dataset{}, quick_options(0)), DataError,
                     "'empty.h5' is empty");
  ASSERT_THROWS_WITH(parse_optimizer("rmsprop"), ConfigError, "accepted: sgd, adam");
}

TEST(ModelTest, FromTensorsNamesTheBadTensor) {
  Model model = Model::initialize(zoo_spec("mlp-small"), 0);
  auto tensors = model.tensors();
  tensors["1.weight"] = torch::zeros({3, 3});
  ASSERT_THROWS_WITH(Model::from_tensors(model.spec(), tensors), ModelError,
                     "tensor '1.weight' has shape [3, 3], expected [32, 784]");
  tensors.erase("1.weight");
  ASSERT_THROWS_WITH(Model::from_tensors(model.spec(), tensors), ModelError,
                     "missing tensor '1.weight'");
}

TEST(ModelTest, InitializeIsSeeded) {
  const auto a = Model::initialize(zoo_spec("lenet5"), 1);
  const auto b = Model::initialize(zoo_spec("lenet5"), 1);
  const auto c = Model::initialize(zoo_spec("lenet5"), 2);
  EXPECT_TRUE(torch::equal(a.tensor("0.weight"), b.tensor("0.weight")));
  EXPECT_FALSE(torch::equal(a.tensor("0.weight"), c.tensor("0.weight")));
  const auto copy = a.clone();
  EXPECT_NE(copy.tensor("0.weight").data_ptr(), a.tensor("0.weight").data_ptr());
}

}  // namespace
}  // namespace mcompress
