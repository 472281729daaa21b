// Structured pruning: which layers can lose filters, which filters go, and that removing
// filters whose output is exactly zero leaves the function unchanged while the spec and the
// parameter count shrink as computed by hand.

#include <torch/torch.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "mcompress/core/error.h"
#include "mcompress/core/zoo.h"
#include "mcompress/prune/prune.h"
#include "mcompress/prune/structured.h"
#include "mcompress/runtime/executor.h"
#include "test_support.h"

namespace mcompress::prune {
namespace {

constexpr double kSameFunction = 1e-5;

at::Tensor logits(const Model& m, const at::Tensor& x) {
  runtime::ExecutorOptions o;
  o.policy = runtime::KernelPolicy::kFp32;
  return runtime::Executor(m, o).run(x);
}

// Makes filter `c` of conv/linear layer `layer` output exactly zero after its batchnorm (if
// any): zero weights and bias, and a batchnorm that maps 0 to 0.
void silence_filter(Model& m, int64_t layer, int64_t c, int64_t batchnorm = -1) {
  torch::NoGradGuard no_grad;
  const std::string p = std::to_string(layer) + ".";
  m.tensor(p + "weight")[c].zero_();
  if (m.has_tensor(p + "bias")) m.tensor(p + "bias")[c].zero_();
  if (batchnorm >= 0) {
    const std::string b = std::to_string(batchnorm) + ".";
    m.tensor(b + "bias")[c].zero_();
    m.tensor(b + "running_mean")[c].zero_();
  }
}

// Non-trivial batchnorm statistics, so that a wrong channel slice shows in the outputs.
void randomize_batchnorms(Model& m) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(7);
  for (const auto& info : m.tensor_infos()) {
    if (info.role == TensorRole::kRunningMean) m.tensor(info.name).normal_(0, 0.2);
    if (info.role == TensorRole::kRunningVar) m.tensor(info.name).uniform_(0.5, 2.0);
    if (info.role == TensorRole::kBias && info.shape.size() == 1 &&
        m.spec().layers[static_cast<size_t>(info.layer)].type == LayerType::kBatchNorm2d) {
      m.tensor(info.name).normal_(0, 0.2);
    }
  }
}

TEST(ChannelChainTest, Lenet5SmallChainsThroughPoolAndFlatten) {
  std::vector<std::string> skipped;
  const auto chains = channel_chains(zoo_spec("lenet5-small"), &skipped);
  ASSERT_EQ(chains.size(), 3u);
  EXPECT_EQ(chains[0].producer, 0);
  EXPECT_EQ(chains[0].consumer, 3);
  EXPECT_EQ(chains[0].columns_per_channel, 1);
  EXPECT_EQ(chains[1].producer, 3);
  EXPECT_EQ(chains[1].consumer, 7);
  EXPECT_EQ(chains[1].columns_per_channel, 25);  // 8 x 5 x 5 flattened
  EXPECT_EQ(chains[2].producer, 7);
  EXPECT_EQ(chains[2].consumer, 9);
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_NE(skipped[0].find("layer 9 (linear): its outputs are the classes"), std::string::npos);
}

TEST(ChannelChainTest, ConvnetChainsCarryTheirBatchnorms) {
  const auto chains = channel_chains(zoo_spec("convnet"));
  ASSERT_EQ(chains.size(), 5u);
  EXPECT_EQ(chains[0].batchnorms, std::vector<int64_t>{1});
  EXPECT_EQ(chains[3].producer, 11);
  EXPECT_EQ(chains[3].batchnorms, std::vector<int64_t>{12});
  EXPECT_EQ(chains[3].consumer, 17);  // through relu, maxpool, flatten and dropout
  EXPECT_EQ(chains[3].columns_per_channel, 9);
  EXPECT_TRUE(chains[4].batchnorms.empty());
}

TEST(ChannelChainTest, Resnet8HasNoPrunableLayerAndSaysWhy) {
  std::vector<std::string> skipped;
  EXPECT_TRUE(channel_chains(zoo_spec("resnet8"), &skipped).empty());
  ASSERT_EQ(skipped.size(), 5u);
  EXPECT_NE(skipped[0].find("layer 0 (conv2d): feeds residual block 3"), std::string::npos)
      << skipped[0];
  EXPECT_NE(skipped[1].find("layer 3 (residual): residual block"), std::string::npos) << skipped[1];
}

TEST(ChannelsToKeepTest, KeepsLargestNormsAndRemovesTiesInIndexOrder) {
  const auto norms = torch::tensor({1.0, 0.0, 1.0, 0.0, 2.0});
  EXPECT_EQ(channels_to_keep(norms, 3), (std::vector<int64_t>{0, 2, 4}));
  EXPECT_EQ(channels_to_keep(norms, 2), (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(channels_to_keep(norms, 5), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  ASSERT_THROWS_WITH(channels_to_keep(norms, 0), ModelError, "cannot keep 0 of 5");
}

TEST(FilterNormTest, L1NormPerOutputChannel) {
  const auto w =
      torch::tensor({1.0f, -2.0f, 0.5f, 0.0f, -3.0f, 1.0f, 0.0f, 0.0f}).reshape({2, 1, 2, 2});
  const auto n = filter_l1_norms(w);
  EXPECT_FLOAT_EQ(n[0].item<float>(), 3.5f);
  EXPECT_FLOAT_EQ(n[1].item<float>(), 4.0f);
}

TEST(RemoveChannelsTest, ZeroFiltersOfLenet5SmallGoWithoutChangingTheFunction) {
  Model m = Model::initialize(zoo_spec("lenet5-small"), 3);
  silence_filter(m, 0, 1);
  silence_filter(m, 0, 3);
  silence_filter(m, 3, 2);
  silence_filter(m, 7, 5);
  silence_filter(m, 7, 17);
  const auto x = testing::block_images(16, 4).x;
  const auto before = logits(m, x);
  EXPECT_EQ(m.spec().parameter_count(), 7674);

  const auto chains = channel_chains(m.spec());
  Model p = m;
  const std::vector<std::pair<ChannelChain, int64_t>> plan = {
      {chains[0], 2}, {chains[1], 7}, {chains[2], 30}};
  for (const auto& [chain, keep] : plan) {
    const auto w = p.tensor(std::to_string(chain.producer) + ".weight");
    p = remove_channels(p, chain, channels_to_keep(filter_l1_norms(w), keep));
  }
  const auto& l = p.spec().layers;
  EXPECT_EQ(l[0].out_channels, 2);
  EXPECT_EQ(l[3].in_channels, 2);
  EXPECT_EQ(l[3].out_channels, 7);
  EXPECT_EQ(l[7].in_features, 7 * 25);
  EXPECT_EQ(l[7].out_features, 30);
  EXPECT_EQ(l[9].in_features, 30);
  EXPECT_EQ(l[9].out_features, 10);
  // conv 2·25+2, conv 7·2·25+7, linear 30·175+30, linear 10·30+10
  EXPECT_EQ(p.spec().parameter_count(), 52 + 357 + 5280 + 310);
  EXPECT_EQ(p.tensor("7.weight").sizes(), (at::IntArrayRef{30, 175}));
  const auto after = logits(p, x);
  EXPECT_LT((after - before).abs().max().item<double>(), kSameFunction);
  // The input model is untouched.
  EXPECT_EQ(m.spec().parameter_count(), 7674);
}

TEST(RemoveChannelsTest, SlicesMasksAlongWithTheirTensors) {
  Model m = Model::initialize(zoo_spec("lenet5-small"), 3);
  auto mask = torch::ones({32, 200}, torch::kBool);
  mask[4][7] = false;
  m.set_mask("7.weight", mask);
  const auto chains = channel_chains(m.spec());
  Model p = remove_channels(m, chains[2], {0, 4, 9});
  ASSERT_EQ(p.masks.count("7.weight"), 1u);
  EXPECT_EQ(p.masks.at("7.weight").sizes(), (at::IntArrayRef{3, 200}));
  EXPECT_FALSE(p.masks.at("7.weight")[1][7].item<bool>());
  EXPECT_EQ(p.masks.at("7.weight").logical_not().sum().item<int64_t>(), 1);
  ASSERT_THROWS_WITH(remove_channels(m, chains[2], {4, 0}), ModelError, "ascending");
  ASSERT_THROWS_WITH(remove_channels(m, chains[2], {}), ModelError, "ascending");
}

TEST(StructuredStageTest, ConvnetZeroFiltersThroughBatchnormAndFlattenKeepTheFunction) {
  at::set_num_threads(1);
  Model m = Model::initialize(zoo_spec("convnet"), 5);
  randomize_batchnorms(m);
  silence_filter(m, 0, 6, 1);
  silence_filter(m, 0, 20, 1);
  silence_filter(m, 11, 100, 12);
  const auto x = testing::block_images(8, 6).x;
  const auto before = logits(m, x);

  PruneOptions o;
  o.method = PruneMethod::kStructured;
  o.finetune_epochs = 0;
  o.target = 0;
  o.overrides = {{"0.weight", 2.0 / 32}, {"11.weight", 1.0 / 128}};
  const auto report = prune_model(m, o, Dataset{}, Dataset{});

  const auto& l = m.spec().layers;
  EXPECT_EQ(l[0].out_channels, 30);
  EXPECT_EQ(l[1].num_features, 30);
  EXPECT_EQ(l[4].in_channels, 30);
  EXPECT_EQ(l[11].out_channels, 127);
  EXPECT_EQ(l[12].num_features, 127);
  EXPECT_EQ(l[17].in_features, 127 * 9);
  // Removed: conv0 2·(9+1), bn1 2·2, conv4 inputs 64·2·9, conv11 64·9+1, bn12 2, linear17 128·9.
  EXPECT_EQ(report.parameters_before, 279050);
  EXPECT_EQ(report.parameters_after, 279050 - (20 + 4 + 1152 + 577 + 2 + 1152));
  EXPECT_EQ(m.spec().parameter_count(), report.parameters_after);
  ASSERT_EQ(report.widths.size(), 5u);
  EXPECT_EQ(report.widths[0].layer, "0 (conv2d)");
  EXPECT_EQ(report.widths[0].before, 32);
  EXPECT_EQ(report.widths[0].after, 30);
  EXPECT_EQ(report.widths[1].after, 64);  // target 0: unchanged

  const auto after = logits(m, x);
  EXPECT_LT((after - before).abs().max().item<double>(), kSameFunction);
}

TEST(StructuredStageTest, HalfTheFiltersOfLenet5SmallWithFineTuning) {
  at::set_num_threads(1);
  const auto train = testing::block_images(200, 1);
  const auto val = testing::block_images(100, 2);
  Model m = Model::initialize(zoo_spec("lenet5-small"), 0);
  PruneOptions o;
  o.method = PruneMethod::kStructured;
  o.target = 0.5;
  o.finetune.batch_size = 32;
  o.finetune.lr = 3e-3;
  const auto report = prune_model(m, o, train, val);
  const auto& l = m.spec().layers;
  EXPECT_EQ(l[0].out_channels, 2);
  EXPECT_EQ(l[3].out_channels, 4);
  EXPECT_EQ(l[7].in_features, 4 * 25);
  EXPECT_EQ(l[7].out_features, 16);
  EXPECT_EQ(l[9].out_features, 10);  // the classes are never pruned
  EXPECT_EQ(report.parameters_after,
            (2 * 25 + 2) + (4 * 2 * 25 + 4) + (16 * 100 + 16) + (10 * 16 + 10));
  ASSERT_EQ(report.rounds.size(), 1u);
  EXPECT_GE(report.rounds[0].val_accuracy, 0.0);
  EXPECT_EQ(report.val_accuracy_after, report.rounds[0].val_accuracy);
  // 1 - kept/total over the original conv/linear weights.
  const double kept = 2 * 25 + 4 * 2 * 25 + 16 * 100 + 10 * 16;
  const double total = 4 * 25 + 8 * 4 * 25 + 32 * 200 + 10 * 32;
  EXPECT_NEAR(report.sparsity(), 1 - kept / total, 1e-12);
  ASSERT_EQ(report.tensors.size(), 4u);
  EXPECT_EQ(report.tensors[0].rule, "layer");
  EXPECT_EQ(report.tensors[3].rule, "fixed");  // the classes
  EXPECT_EQ(report.tensors[3].target, 0);
  EXPECT_EQ(report.tensors[3].kept, 10 * 16);
}

TEST(StructuredStageTest, IterativeRoundsRemoveFiltersOfTheOriginalWidth) {
  Model m = Model::initialize(zoo_spec("lenet5-small"), 0);
  PruneOptions o;
  o.method = PruneMethod::kStructured;
  o.schedule = PruneSchedule::kIterative;
  o.rounds = 2;
  o.target = 0.75;
  o.finetune_epochs = 0;
  o.exclude = {"first"};
  const auto report = prune_model(m, o, Dataset{}, Dataset{});
  ASSERT_EQ(report.rounds.size(), 2u);
  EXPECT_NEAR(report.rounds[0].target, 0.5, 1e-12);  // 1 - 0.25^(1/2)
  EXPECT_EQ(m.spec().layers[0].out_channels, 4);     // excluded
  EXPECT_EQ(m.spec().layers[3].out_channels, 2);     // 8 - round(0.75·8)
  EXPECT_EQ(m.spec().layers[7].out_features, 8);     // 32 - round(0.75·32)
}

TEST(StructuredStageTest, Resnet8IsRejectedWithTheReason) {
  Model m = Model::initialize(zoo_spec("resnet8"), 0);
  PruneOptions o;
  o.method = PruneMethod::kStructured;
  o.finetune_epochs = 0;
  ASSERT_THROWS_WITH(prune_model(m, o, Dataset{}, Dataset{}), ConfigError,
                     "structured pruning has no layer to prune in 'resnet8'");
  ASSERT_THROWS_WITH(prune_model(m, o, Dataset{}, Dataset{}), ConfigError, "residual block");
  // validate() knows it from the spec alone, before any data is loaded.
  ASSERT_THROWS_WITH(o.validate(m), ConfigError, "feeds residual block 3");
}

TEST(StructuredStageTest, OverrideOfAnUnprunableLayerSaysWhy) {
  Model m = Model::initialize(zoo_spec("lenet5-small"), 0);
  PruneOptions o;
  o.method = PruneMethod::kStructured;
  o.finetune_epochs = 0;
  o.overrides = {{"9.weight", 0.5}};
  ASSERT_THROWS_WITH(
      prune_model(m, o, Dataset{}, Dataset{}), ConfigError,
      "'9.weight' cannot be pruned structurally: layer 9 (linear): its outputs are the classes");
}

}  // namespace
}  // namespace mcompress::prune
