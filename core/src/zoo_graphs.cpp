#include "mcompress/core/zoo_graphs.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "mcompress/core/error.h"

namespace mcompress {
namespace {

using json = nlohmann::json;

constexpr int64_t kClasses = 10;

// Appends nodes named after the torchvision module they stand for (so their tensors are
// "<module>.weight", ...); each node's one output value has the node's name.
struct GraphBuilder {
  Graph g;
  std::string value = "input";

  GraphBuilder() {
    g.inputs.push_back(ValueInfo{"input", DType::kFloat32, {Dim::named("batch"), 1, 28, 28}});
    g.preprocess.kind = Preprocess::Kind::kNormalize;
    g.preprocess.mean = {kFashionMnistMean};
    g.preprocess.std = {kFashionMnistStd};
    g.task.num_classes = kClasses;
  }

  const std::string& node_from(const std::string& name, const std::string& op,
                               std::vector<std::string> inputs, json attrs = json::object()) {
    g.nodes.push_back(Node{name, op, std::move(inputs), {name}, std::move(attrs), {}});
    return value = name;
  }
  const std::string& node(const std::string& name, const std::string& op,
                          json attrs = json::object()) {
    return node_from(name, op, {value}, std::move(attrs));
  }
  // nn.Conv2d(bias=False) with padding (kernel - 1) / 2, as torchvision's blocks.
  const std::string& conv(const std::string& name, int64_t out, int64_t kernel, int64_t stride,
                          int64_t groups = 1) {
    const int64_t pad = (kernel - 1) / 2;
    return node(name, "Conv",
                {{"out_channels", out},
                 {"kernel_shape", {kernel, kernel}},
                 {"strides", {stride, stride}},
                 {"pads", {pad, pad, pad, pad}},
                 {"group", groups},
                 {"bias", 0}});
  }
  // nn.BatchNorm2d with PyTorch's eps 1e-5 and momentum 0.1 (ONNX momentum 0.9).
  const std::string& bn(const std::string& name) {
    return node(name, "BatchNormalization", {{"epsilon", 1e-5}, {"momentum", 0.9}});
  }
  const std::string& relu(const std::string& name) { return node(name, "Relu"); }
  const std::string& relu6(const std::string& name) {
    return node(name, "Clip", {{"min", 0.0}, {"max", 6.0}});
  }
  // Global average pool, flatten, [dropout,] linear to the classes.
  Graph head(const std::string& fc, double dropout = 0.0, const std::string& dropout_name = "") {
    node("avgpool", "GlobalAveragePool");
    node("flatten", "Flatten", {{"axis", 1}});
    if (dropout > 0) node(dropout_name, "Dropout", {{"ratio", dropout}});
    node(fc, "Gemm", {{"out_features", kClasses}, {"bias", 1}});
    g.outputs = {value};
    g.validate();
    return g;
  }
};

// torchvision.models.resnet18(num_classes=10) for 28x28 single-channel images: conv1 is a
// 1-channel 3x3 stride-1 convolution and there is no max pool (maxpool = Identity), so the
// stages run at 28, 14, 7 and 4 pixels.
Graph resnet18() {
  GraphBuilder b;
  b.conv("conv1", 64, 3, 1);
  b.bn("bn1");
  b.relu("relu");
  int64_t in = 64;
  const int64_t widths[] = {64, 128, 256, 512};
  for (int layer = 0; layer < 4; ++layer) {
    const int64_t width = widths[layer];
    for (int block = 0; block < 2; ++block) {
      const std::string p = "layer" + std::to_string(layer + 1) + "." + std::to_string(block) + ".";
      const int64_t stride = layer > 0 && block == 0 ? 2 : 1;
      const std::string block_input = b.value;
      b.conv(p + "conv1", width, 3, stride);
      b.bn(p + "bn1");
      b.relu(p + "relu1");
      b.conv(p + "conv2", width, 3, 1);
      const std::string main_path = b.bn(p + "bn2");
      std::string shortcut = block_input;
      if (stride != 1 || in != width) {
        b.value = block_input;
        b.conv(p + "downsample.0", width, 1, stride);
        shortcut = b.bn(p + "downsample.1");
      }
      b.node_from(p + "add", "Add", {main_path, shortcut});
      b.relu(p + "relu");
      in = width;
    }
  }
  return b.head("fc");
}

// torchvision's _make_divisible: round to a multiple of `divisor`, never below 90% of v.
int64_t make_divisible(double v, int64_t divisor) {
  int64_t out =
      std::max<int64_t>(divisor, static_cast<int64_t>(v + divisor / 2.0) / divisor * divisor);
  if (static_cast<double>(out) < 0.9 * v) out += divisor;
  return out;
}

// torchvision.models.mobilenet_v2(num_classes=10, width_mult=0.5) for 28x28 single-channel
// images: the stem is a 1-channel 3x3 convolution with stride 1 instead of 2 (our choice: with
// stride 2 the last blocks would see 1x1 maps; with 1 they see 2x2, as torchvision's 224 input
// gives 7x7 with five halvings). ReLU6 is Clip(0, 6); an inverted residual block adds its input
// when its stride is 1 and its input and output widths agree.
Graph mobilenetv2() {
  constexpr double kWidth = 0.5;
  constexpr int64_t kRound = 8;
  GraphBuilder b;
  int64_t in = make_divisible(32 * kWidth, kRound);
  const int64_t last = make_divisible(1280 * std::max(1.0, kWidth), kRound);
  // Conv2dNormActivation i: "features.i.0" conv, ".1" batchnorm, ".2" ReLU6.
  auto conv_bn_relu6 = [&b](const std::string& p, int64_t out, int64_t kernel, int64_t stride,
                            int64_t groups) {
    b.conv(p + ".0", out, kernel, stride, groups);
    b.bn(p + ".1");
    b.relu6(p + ".2");
  };
  conv_bn_relu6("features.0", in, 3, 1, 1);
  struct Setting {
    int64_t t, c, n, s;
  };
  const Setting settings[] = {{1, 16, 1, 1}, {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
                              {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
  int index = 1;
  for (const Setting& s : settings) {
    const int64_t out = make_divisible(static_cast<double>(s.c) * kWidth, kRound);
    for (int64_t i = 0; i < s.n; ++i, ++index) {
      const int64_t stride = i == 0 ? s.s : 1;
      const int64_t hidden = static_cast<int64_t>(std::round(static_cast<double>(in * s.t)));
      const std::string p = "features." + std::to_string(index) + ".conv.";
      const std::string block_input = b.value;
      int part = 0;
      if (s.t != 1) conv_bn_relu6(p + std::to_string(part++), hidden, 1, 1, 1);
      conv_bn_relu6(p + std::to_string(part++), hidden, 3, stride, hidden);
      b.conv(p + std::to_string(part++), out, 1, 1);
      const std::string main_path = b.bn(p + std::to_string(part++));
      if (stride == 1 && in == out) {
        b.node_from("features." + std::to_string(index) + ".add", "Add", {block_input, main_path});
      }
      in = out;
    }
  }
  conv_bn_relu6("features." + std::to_string(index), last, 1, 1, 1);
  return b.head("classifier.1", 0.2, "classifier.0");
}

struct GraphZooModel {
  ZooEntry entry;
  std::function<Graph()> make;
};

const std::vector<GraphZooModel>& graph_zoo() {
  static const std::vector<GraphZooModel> models = {
      {{"resnet18",
        "torchvision ResNet-18 (BasicBlock x [2,2,2,2]) with a 1-channel 3x3 stride-1 stem, no "
        "max pool"},
       resnet18},
      {{"mobilenetv2", "torchvision MobileNetV2, width 0.5, ReLU6, 1-channel 3x3 stride-1 stem"},
       mobilenetv2},
  };
  return models;
}

}  // namespace

std::vector<ZooEntry> zoo_graph_entries() {
  std::vector<ZooEntry> out;
  for (const auto& m : graph_zoo()) out.push_back(m.entry);
  return out;
}

Graph zoo_graph(const std::string& name) {
  std::string names;
  for (const auto& m : graph_zoo()) {
    if (m.entry.name == name) {
      Graph g = m.make();
      g.name = name;
      return g;
    }
    names += (names.empty() ? "" : ", ") + m.entry.name;
  }
  throw ConfigError("unknown graph zoo model '" + name + "'; available: " + names);
}

}  // namespace mcompress
