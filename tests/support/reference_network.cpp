#include "reference_network.h"

#include "mcompress/core/error.h"

namespace mcompress::testing {
namespace {

torch::nn::Conv2d make_conv(int64_t in, int64_t out, int64_t kernel, int64_t stride,
                            int64_t padding, int64_t groups, bool bias) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel)
                               .stride(stride)
                               .padding(padding)
                               .groups(groups)
                               .bias(bias));
}

torch::nn::BatchNorm2d make_bn2d(int64_t features, double eps = 1e-5, double momentum = 0.1) {
  return torch::nn::BatchNorm2d(torch::nn::BatchNormOptions(features).eps(eps).momentum(momentum));
}

torch::nn::AnyModule make_layer(const LayerSpec& l) {
  using namespace torch::nn;
  switch (l.type) {
    case LayerType::kLinear:
      return AnyModule(Linear(LinearOptions(l.in_features, l.out_features).bias(l.bias)));
    case LayerType::kConv2d:
      return AnyModule(make_conv(l.in_channels, l.out_channels, l.kernel_size, l.stride, l.padding,
                                 l.groups, l.bias));
    case LayerType::kBatchNorm1d:
      return AnyModule(
          BatchNorm1d(BatchNormOptions(l.num_features).eps(l.eps).momentum(l.momentum)));
    case LayerType::kBatchNorm2d:
      return AnyModule(make_bn2d(l.num_features, l.eps, l.momentum));
    case LayerType::kReLU:
      return AnyModule(ReLU());
    case LayerType::kMaxPool2d:
      return AnyModule(
          MaxPool2d(MaxPool2dOptions(l.kernel_size).stride(l.stride).padding(l.padding)));
    case LayerType::kAvgPool2d:
      return AnyModule(
          AvgPool2d(AvgPool2dOptions(l.kernel_size).stride(l.stride).padding(l.padding)));
    case LayerType::kAdaptiveAvgPool2d:
      return AnyModule(AdaptiveAvgPool2d(AdaptiveAvgPool2dOptions(l.output_size)));
    case LayerType::kFlatten:
      return AnyModule(Flatten());
    case LayerType::kDropout:
      return AnyModule(Dropout(DropoutOptions(l.p)));
    case LayerType::kResidual:
      return AnyModule(ReferenceResidual(l));
  }
  throw ModelError("cannot build layer type " + to_string(l.type));
}

torch::Tensor per_channel(const std::vector<double>& values, const std::vector<int64_t>& input) {
  std::vector<int64_t> shape(input.size() + 1, 1);
  shape[1] = static_cast<int64_t>(values.size());
  return torch::tensor(values, torch::kFloat32).reshape(shape);
}

}  // namespace

ReferenceResidualImpl::ReferenceResidualImpl(const LayerSpec& l) {
  conv1 =
      register_module("conv1", make_conv(l.in_channels, l.out_channels, 3, l.stride, 1, 1, false));
  bn1 = register_module("bn1", make_bn2d(l.out_channels));
  conv2 = register_module("conv2", make_conv(l.out_channels, l.out_channels, 3, 1, 1, 1, false));
  bn2 = register_module("bn2", make_bn2d(l.out_channels));
  if (l.projection) {
    shortcut = register_module(
        "shortcut",
        torch::nn::Sequential(make_conv(l.in_channels, l.out_channels, 1, l.stride, 0, 1, false),
                              make_bn2d(l.out_channels)));
  }
}

torch::Tensor ReferenceResidualImpl::forward(const torch::Tensor& x) {
  auto y = bn2(conv2(torch::relu(bn1(conv1(x)))));
  return torch::relu(y + (shortcut ? shortcut->forward(x) : x));
}

ReferenceNetworkImpl::ReferenceNetworkImpl(const ArchSpec& given) {
  const ArchSpec spec = given.resolved();
  mean_ = per_channel(spec.mean, spec.input_shape);
  std_ = per_channel(spec.std, spec.input_shape);
  layers_ = register_module("layers", torch::nn::Sequential());
  for (size_t i = 0; i < spec.layers.size(); ++i) {
    layers_->push_back(std::to_string(i), make_layer(spec.layers[i]));
  }
}

torch::Tensor ReferenceNetworkImpl::normalize(const torch::Tensor& x) const {
  return (x - mean_) / std_;
}

torch::Tensor ReferenceNetworkImpl::forward(const torch::Tensor& x) {
  return layers_->forward(normalize(x));
}

std::map<std::string, torch::Tensor> ReferenceNetworkImpl::state() const {
  std::map<std::string, torch::Tensor> out;
  const std::string prefix = "layers.";
  for (const auto& item : named_parameters()) out[item.key().substr(prefix.size())] = item.value();
  for (const auto& item : named_buffers()) {
    if (item.key().find("num_batches_tracked") != std::string::npos) continue;
    out[item.key().substr(prefix.size())] = item.value();
  }
  return out;
}

void ReferenceNetworkImpl::load(const Model& model) {
  torch::NoGradGuard no_grad;
  auto mine = state();
  for (const auto& info : model.tensor_infos()) {
    auto it = mine.find(info.name);
    MCOMPRESS_CHECK(it != mine.end(), ModelError, "reference network has no tensor '", info.name,
                    "'");
    it->second.copy_(model.tensor(info.name));
  }
}

}  // namespace mcompress::testing
