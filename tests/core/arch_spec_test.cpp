#include <gtest/gtest.h>

#include "mcompress/core/arch_spec.h"
#include "mcompress/core/error.h"
#include "mcompress/core/zoo.h"
#include "test_support.h"

namespace mcompress {
namespace {

std::string spec_with_layers(const std::string& layers, const std::string& input = "[1,28,28]") {
  return R"({"name":"t","input_shape":)" + input + R"(,"num_classes":10,"layers":[)" + layers +
         "]}";
}

TEST(ArchSpecTest, InfersShapesAndFillsInputSizes) {
  const auto spec = ArchSpec::from_json_text(spec_with_layers(
      R"({"type":"conv2d","out_channels":6,"kernel_size":5,"padding":2},{"type":"relu"},
         {"type":"maxpool2d","kernel_size":2},{"type":"flatten"},
         {"type":"linear","out_features":10})"));
  const auto shapes = spec.infer_shapes();
  EXPECT_EQ(shapes[0], (std::vector<int64_t>{6, 28, 28}));
  EXPECT_EQ(shapes[2], (std::vector<int64_t>{6, 14, 14}));
  EXPECT_EQ(shapes[3], (std::vector<int64_t>{1176}));
  EXPECT_EQ(spec.layers[0].in_channels, 1);
  EXPECT_EQ(spec.layers[0].stride, 1);
  EXPECT_EQ(spec.layers[2].stride, 2);  // pools default their stride to the kernel
  EXPECT_EQ(spec.layers[4].in_features, 1176);
}

TEST(ArchSpecTest, JsonRoundTripIsExact) {
  for (const auto& entry : zoo_entries()) {
    const auto spec = zoo_spec(entry.name);
    const auto again = ArchSpec::from_json_text(spec.to_json_text());
    EXPECT_EQ(again.to_json_text(), spec.to_json_text()) << entry.name;
    EXPECT_EQ(again.parameter_count(), spec.parameter_count());
  }
}

TEST(ArchSpecTest, TensorNamesFollowPyTorchStateDictKeys) {
  const auto spec = zoo_spec("resnet8");
  std::vector<std::string> names;
  for (const auto& t : spec.tensors()) names.push_back(t.name);
  auto has = [&](const std::string& n) {
    return std::find(names.begin(), names.end(), n) != names.end();
  };
  EXPECT_TRUE(has("0.weight"));
  EXPECT_TRUE(has("3.conv1.weight"));
  EXPECT_TRUE(has("3.bn2.running_var"));
  EXPECT_FALSE(has("3.shortcut.0.weight"));  // 16 -> 16, stride 1: identity shortcut
  EXPECT_TRUE(has("4.shortcut.0.weight"));   // 16 -> 32, stride 2: projection
  EXPECT_TRUE(has("4.shortcut.1.running_mean"));
}

TEST(ArchSpecTest, ZooParameterCounts) {
  EXPECT_EQ(zoo_spec("mlp").parameter_count(), 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10);
  EXPECT_EQ(zoo_spec("lenet5").parameter_count(), 61706);
  // Students stay within 10% of the convnet teacher.
  EXPECT_LE(zoo_spec("mlp-small").parameter_count() * 10, zoo_spec("convnet").parameter_count());
  EXPECT_LE(zoo_spec("lenet5-small").parameter_count() * 10, zoo_spec("convnet").parameter_count());
}

TEST(ArchSpecErrorTest, UnknownLayerTypeNamesTheLayer) {
  ASSERT_THROWS_WITH(ArchSpec::from_json_text(
                         spec_with_layers(R"({"type":"flatten"},{"type":"lstm","hidden":3})")),
                     ModelError, "layer 1: unknown layer type 'lstm'; accepted: linear");
}

TEST(ArchSpecErrorTest, UnknownFieldNamesLayerAndField) {
  ASSERT_THROWS_WITH(ArchSpec::from_json_text(spec_with_layers(
                         R"({"type":"flatten"},{"type":"linear","out_features":10,"bais":false})")),
                     ModelError, "layer 1 (linear): unknown field 'bais'");
}

TEST(ArchSpecErrorTest, BadValues) {
  ASSERT_THROWS_WITH(
      ArchSpec::from_json_text(
          spec_with_layers(R"({"type":"flatten"},{"type":"linear","out_features":-3})")),
      ModelError, "layer 1 (linear): field 'out_features' must be in [0, 1048576], got -3");
  ASSERT_THROWS_WITH(
      ArchSpec::from_json_text(spec_with_layers(
          R"({"type":"flatten"},{"type":"dropout","p":1.5},{"type":"linear","out_features":10})")),
      ModelError, "layer 1 (dropout): p must be in [0, 1), got 1.5");
  ASSERT_THROWS_WITH(ArchSpec::from_json_text(spec_with_layers(
                         R"({"type":"flatten"},{"type":"linear","out_features":"ten"})")),
                     ModelError, "field 'out_features' must be an integer");
  ASSERT_THROWS_WITH(
      ArchSpec::from_json_text(spec_with_layers(
          R"({"type":"conv2d","out_channels":4,"kernel_size":3,"groups":3},{"type":"flatten"},{"type":"linear","out_features":10})")),
      ModelError, "layer 0 (conv2d): groups 3 must divide");
  ASSERT_THROWS_WITH(ArchSpec::from_json_text("{not json"), ModelError, "not valid JSON");
}

TEST(ArchSpecErrorTest, ShapesThatDoNotChain) {
  ASSERT_THROWS_WITH(
      ArchSpec::from_json_text(spec_with_layers(R"({"type":"linear","out_features":10})")),
      ModelError, "layer 0 (linear): expects a flat [features] input, got shape [1, 28, 28]");
  ASSERT_THROWS_WITH(
      ArchSpec::from_json_text(spec_with_layers(
          R"({"type":"flatten"},{"type":"linear","in_features":100,"out_features":10})")),
      ModelError, "layer 1 (linear): in_features is 100 but the input has 784");
  ASSERT_THROWS_WITH(ArchSpec::from_json_text(spec_with_layers(
                         R"({"type":"flatten"},{"type":"linear","out_features":7})")),
                     ModelError, "the last layer outputs [7] but num_classes is 10");
  ASSERT_THROWS_WITH(
      ArchSpec::from_json_text(spec_with_layers(
          R"({"type":"conv2d","out_channels":4,"kernel_size":30},{"type":"flatten"},{"type":"linear","out_features":10})")),
      ModelError, "kernel 30 does not fit an input of size 28");
}

TEST(ZooTest, UnknownNameListsTheZoo) {
  ASSERT_THROWS_WITH(zoo_spec("vgg16"), ConfigError,
                     "unknown zoo model 'vgg16'; accepted: mlp, lenet5");
}

}  // namespace
}  // namespace mcompress
