#include "mcompress/core/zoo.h"

#include <functional>

#include "mcompress/core/error.h"

namespace mcompress {
namespace {

LayerSpec linear(int64_t out) {
  LayerSpec l;
  l.type = LayerType::kLinear;
  l.out_features = out;
  return l;
}
LayerSpec conv(int64_t out, int64_t kernel, int64_t padding, int64_t stride = 1) {
  LayerSpec l;
  l.type = LayerType::kConv2d;
  l.out_channels = out;
  l.kernel_size = kernel;
  l.padding = padding;
  l.stride = stride;
  return l;
}
LayerSpec simple(LayerType type) {
  LayerSpec l;
  l.type = type;
  return l;
}
LayerSpec relu() { return simple(LayerType::kReLU); }
LayerSpec flatten() { return simple(LayerType::kFlatten); }
LayerSpec bn2d() { return simple(LayerType::kBatchNorm2d); }
LayerSpec maxpool(int64_t kernel) {
  LayerSpec l = simple(LayerType::kMaxPool2d);
  l.kernel_size = kernel;
  return l;
}
LayerSpec dropout(double p) {
  LayerSpec l = simple(LayerType::kDropout);
  l.p = p;
  return l;
}
LayerSpec residual(int64_t out, int64_t stride) {
  LayerSpec l = simple(LayerType::kResidual);
  l.out_channels = out;
  l.stride = stride;
  return l;
}
LayerSpec global_avgpool() {
  LayerSpec l = simple(LayerType::kAdaptiveAvgPool2d);
  l.output_size = 1;
  return l;
}

ArchSpec fashion_spec(const std::string& name, std::vector<LayerSpec> layers) {
  ArchSpec spec;
  spec.name = name;
  spec.input_shape = {1, 28, 28};
  spec.num_classes = 10;
  spec.mean = {kFashionMnistMean};
  spec.std = {kFashionMnistStd};
  spec.layers = std::move(layers);
  return spec.resolved();
}

struct ZooModel {
  ZooEntry entry;
  std::function<ArchSpec()> make;
};

const std::vector<ZooModel>& zoo() {
  static const std::vector<ZooModel> models = {
      {{"mlp", "LeNet-300-100: 784-300-100-10 fully connected"},
       [] {
         return fashion_spec("mlp",
                             {flatten(), linear(300), relu(), linear(100), relu(), linear(10)});
       }},
      {{"lenet5", "LeNet-5: two 5x5 convs with max pooling, then 120-84-10"},
       [] {
         return fashion_spec("lenet5",
                             {conv(6, 5, 2), relu(), maxpool(2), conv(16, 5, 0), relu(), maxpool(2),
                              flatten(), linear(120), relu(), linear(84), relu(), linear(10)});
       }},
      {{"convnet", "VGG-style: 4 conv-bn-relu (32-64-64-128), 3 max pools, 128-10 head"},
       [] {
         return fashion_spec("convnet",
                             {conv(32, 3, 1),  bn2d(),       relu(),      maxpool(2),  //
                              conv(64, 3, 1),  bn2d(),       relu(),      maxpool(2),  //
                              conv(64, 3, 1),  bn2d(),       relu(),                   //
                              conv(128, 3, 1), bn2d(),       relu(),      maxpool(2),  //
                              flatten(),       dropout(0.3), linear(128), relu(),     linear(10)});
       }},
      {{"resnet8", "ResNet-8: 3x3 stem, 3 residual blocks (16-32-64), global pool, linear"},
       [] {
         return fashion_spec("resnet8",
                             {conv(16, 3, 1), bn2d(), relu(), residual(16, 1), residual(32, 2),
                              residual(64, 2), global_avgpool(), flatten(), linear(10)});
       }},
      {{"mlp-small", "student: 784-32-10 fully connected"},
       [] {
         return fashion_spec("mlp-small", {flatten(), linear(32), relu(), linear(10)});
       }},
      {{"lenet5-small", "student: LeNet-5 with 4 and 8 filters, 32-10 head"},
       [] {
         return fashion_spec("lenet5-small",
                             {conv(4, 5, 2), relu(), maxpool(2), conv(8, 5, 0), relu(), maxpool(2),
                              flatten(), linear(32), relu(), linear(10)});
       }},
  };
  return models;
}

}  // namespace

std::vector<ZooEntry> zoo_entries() {
  std::vector<ZooEntry> out;
  for (const auto& m : zoo()) out.push_back(m.entry);
  return out;
}

ArchSpec zoo_spec(const std::string& name) {
  std::string accepted;
  for (const auto& m : zoo()) {
    if (m.entry.name == name) return m.make();
    accepted += (accepted.empty() ? "" : ", ") + m.entry.name;
  }
  throw ConfigError("unknown zoo model '" + name + "'; accepted: " + accepted);
}

}  // namespace mcompress
