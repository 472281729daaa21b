// Magnitude criteria: which tensors are prunable, and exactly which entries a target removes
// per tensor and across tensors, with ties and earlier masks.

#include <torch/torch.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "mcompress/core/error.h"
#include "mcompress/core/zoo.h"
#include "mcompress/prune/magnitude.h"
#include "prune_support.h"
#include "test_support.h"

namespace mcompress::prune {
namespace {

using testing::bools;

void expect_mask(const at::Tensor& got, const at::Tensor& expected) {
  ASSERT_EQ(got.scalar_type(), torch::kBool);
  EXPECT_TRUE(torch::equal(got, expected)) << "got\n" << got << "\nexpected\n" << expected;
}

TEST(PrunableTensorsTest, ConvAndLinearWeightsIncludingResidualConvolutions) {
  const std::vector<std::string> expected = {
      "0.weight",       "3.conv1.weight", "3.conv2.weight",
      "4.conv1.weight", "4.conv2.weight", "4.shortcut.0.weight",
      "5.conv1.weight", "5.conv2.weight", "5.shortcut.0.weight",
      "8.weight"};
  EXPECT_EQ(prunable_tensors(zoo_spec("resnet8")), expected);
  // convnet: batchnorm weights ("1.weight") and every bias stay out.
  EXPECT_EQ(prunable_tensors(zoo_spec("convnet")),
            (std::vector<std::string>{"0.weight", "4.weight", "8.weight", "11.weight", "17.weight",
                                      "19.weight"}));
}

TEST(LayerMaskTest, RemovesTheSmallestMagnitudes) {
  const auto w = torch::tensor({0.5f, -0.1f, 0.3f, -0.2f, 0.05f, 0.9f}).reshape({2, 3});
  // 3 of 6 removed: |0.05|, |-0.1|, |-0.2|.
  expect_mask(layer_magnitude_mask(w, 0.5), bools({1, 0, 1, 0, 0, 1}, {2, 3}));
  expect_mask(layer_magnitude_mask(w, 0.0), bools({1, 1, 1, 1, 1, 1}, {2, 3}));
  expect_mask(layer_magnitude_mask(w, 1.0), bools({0, 0, 0, 0, 0, 0}, {2, 3}));
}

TEST(LayerMaskTest, RemovesRoundedCountAndBreaksTiesByIndex) {
  const auto ones = torch::ones({4});
  expect_mask(layer_magnitude_mask(ones, 0.5), bools({0, 0, 1, 1}, {4}));
  // 1.5 entries round to 2 (half away from zero); the tie at 0.2 removes index 1 before 3.
  const auto w = torch::tensor({0.4f, 0.2f, 0.1f});
  expect_mask(layer_magnitude_mask(w, 0.5), bools({1, 0, 0}, {3}));
  const auto tie = torch::tensor({0.4f, 0.2f, 0.5f, -0.2f});
  expect_mask(layer_magnitude_mask(tie, 0.25), bools({1, 0, 1, 1}, {4}));
}

TEST(GlobalMaskTest, OneThresholdAcrossTensorsVersusOnePerTensor) {
  const auto a = torch::tensor({0.1f, 0.2f, 0.3f, 0.4f});
  const auto b = torch::tensor({1.0f, -2.0f, 3.0f, 0.25f});
  // Globally the 4 smallest of 8 are 0.1, 0.2, 0.25, 0.3: three in a, one in b.
  const auto global = global_magnitude_masks({a, b}, 0.5);
  expect_mask(global[0], bools({0, 0, 0, 1}, {4}));
  expect_mask(global[1], bools({1, 1, 1, 0}, {4}));
  // Per tensor, each loses its own two smallest.
  expect_mask(layer_magnitude_mask(a, 0.5), bools({0, 0, 1, 1}, {4}));
  expect_mask(layer_magnitude_mask(b, 0.5), bools({0, 1, 1, 0}, {4}));
}

TEST(GlobalMaskTest, TiesAcrossTensorsRemoveTheEarlierTensorFirst) {
  const auto a = torch::tensor({0.5f, 0.5f});
  const auto b = torch::tensor({0.5f, 0.5f});
  const auto m = global_magnitude_masks({a, b}, 0.75);
  expect_mask(m[0], bools({0, 0}, {2}));
  expect_mask(m[1], bools({0, 1}, {2}));
}

TEST(GlobalMaskTest, AlreadyPrunedEntriesStayPrunedAndCountFirst) {
  // Entry 0 is large but was pruned before (e.g. its value was rewound): it stays pruned.
  const auto w = torch::tensor({5.0f, 0.1f, 0.2f, 0.3f});
  const auto previous = bools({0, 1, 1, 1}, {4});
  expect_mask(layer_magnitude_mask(w, 0.5, previous), bools({0, 0, 1, 1}, {4}));
  expect_mask(layer_magnitude_mask(w, 0.25, previous), previous);
  // A lower target never regrows: masks only shrink.
  expect_mask(layer_magnitude_mask(w, 0.0, previous), previous);
  // Without the earlier mask, entry 0 would be kept.
  expect_mask(layer_magnitude_mask(w, 0.5), bools({1, 0, 0, 1}, {4}));
}

TEST(GlobalMaskTest, PreviousMasksMayBeMissingPerTensor) {
  const auto a = torch::tensor({1.0f, 2.0f});
  const auto b = torch::tensor({3.0f, 4.0f});
  const auto m = global_magnitude_masks({a, b}, 0.25, {at::Tensor(), bools({1, 0}, {2})});
  expect_mask(m[0], bools({1, 1}, {2}));
  expect_mask(m[1], bools({1, 0}, {2}));
}

TEST(GlobalMaskTest, BadInputsThrowNamingTheProblem) {
  const auto w = torch::ones({3});
  ASSERT_THROWS_WITH(layer_magnitude_mask(w, 1.5), ConfigError, "sparsity must be in [0, 1]");
  ASSERT_THROWS_WITH(layer_magnitude_mask(torch::tensor({1.0f, NAN}), 0.5), ModelError,
                     "non-finite");
  ASSERT_THROWS_WITH(global_magnitude_masks({w, w}, 0.5, {bools({1, 1, 1}, {3})}), ModelError,
                     "1 previous masks for 2 tensors");
  ASSERT_THROWS_WITH(layer_magnitude_mask(w, 0.5, bools({1, 1}, {2})), ModelError,
                     "previous mask 0 has shape [2]");
}

TEST(DensityTest, CountsKeptEntries) {
  const auto d = mask_density(bools({1, 0, 1, 1}, {2, 2}));
  EXPECT_EQ(d.kept, 3);
  EXPECT_EQ(d.total, 4);
  EXPECT_DOUBLE_EQ(d.sparsity(), 0.25);
  EXPECT_EQ(nonzero_density(torch::tensor({0.0f, 1.0f, -0.0f})).kept, 1);
}

}  // namespace
}  // namespace mcompress::prune
