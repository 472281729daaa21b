#include "mcompress/core/network.h"

#include "mcompress/core/error.h"
#include "mcompress/core/graph.h"
#include "mcompress/core/int8_steps.h"
#include "mcompress/core/lowering.h"

namespace mcompress {
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
      return AnyModule(ResidualBlock(l));
  }
  throw ModelError("cannot build layer type " + to_string(l.type));
}

torch::Tensor per_channel(const std::vector<double>& values, const std::vector<int64_t>& input) {
  auto t = torch::tensor(values, torch::kFloat32);
  std::vector<int64_t> shape(input.size() + 1, 1);
  shape[1] = static_cast<int64_t>(values.size());
  return t.reshape(shape);
}

}  // namespace

ResidualBlockImpl::ResidualBlockImpl(const LayerSpec& l, const std::string& key)
    : stride_(l.stride),
      conv1_weight_(key + ".conv1.weight"),
      conv2_weight_(key + ".conv2.weight"),
      shortcut_weight_(key + ".shortcut.0.weight"),
      conv1_key_(key + ".relu1"),
      conv2_key_(key + ".bn2"),
      shortcut_key_(key + ".shortcut.1") {
  conv1 =
      register_module("conv1", make_conv(l.in_channels, l.out_channels, 3, l.stride, 1, 1, false));
  bn1 = register_module("bn1", make_bn2d(l.out_channels));
  conv2 = register_module("conv2", make_conv(l.out_channels, l.out_channels, 3, 1, 1, 1, false));
  bn2 = register_module("bn2", make_bn2d(l.out_channels));
  if (l.projection) {
    shortcut_conv_ = make_conv(l.in_channels, l.out_channels, 1, l.stride, 0, 1, false);
    shortcut_bn_ = make_bn2d(l.out_channels);
    shortcut = register_module("shortcut", torch::nn::Sequential(shortcut_conv_, shortcut_bn_));
  }
}

torch::Tensor ResidualBlockImpl::forward(const torch::Tensor& x) {
  return forward_hooked(x, nullptr);
}

torch::Tensor ResidualBlockImpl::forward_hooked(const torch::Tensor& x, const ForwardHooks* hooks) {
  // Functional convolutions on the registered weights (what Conv2dImpl::forward computes for
  // zero padding), so that a hook can substitute the weight.
  auto conv = [hooks](const torch::nn::Conv2d& c, const std::string& name, const torch::Tensor& in,
                      int64_t stride, int64_t padding) {
    const torch::Tensor w =
        hooks != nullptr && hooks->weight ? hooks->weight(name, c->weight) : c->weight;
    return torch::conv2d(in, w, c->bias, {stride, stride}, {padding, padding});
  };
  auto tap = [hooks](const std::string& key, torch::Tensor t) {
    return hooks != nullptr && hooks->activation ? hooks->activation(key, t) : t;
  };
  auto y = tap(conv1_key_, torch::relu(bn1(conv(conv1, conv1_weight_, x, stride_, 1))));
  y = tap(conv2_key_, bn2(conv(conv2, conv2_weight_, y, 1, 1)));
  torch::Tensor s = x;
  if (shortcut) {
    s = tap(shortcut_key_, shortcut_bn_(conv(shortcut_conv_, shortcut_weight_, x, stride_, 0)));
  }
  return torch::relu(y + s);
}

NetworkImpl::NetworkImpl(const ArchSpec& spec) : spec_(spec.resolved()) {
  mean_ = per_channel(spec_.mean, spec_.input_shape);
  std_ = per_channel(spec_.std, spec_.input_shape);
  layers_ = register_module("layers", torch::nn::Sequential());
  const auto& layers = spec_.layers;
  steps_.resize(layers.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    const LayerSpec& l = layers[i];
    Step& s = steps_[i];
    if (l.type == LayerType::kResidual) {
      s.kind = Step::Kind::kResidual;
      s.residual = ResidualBlock(l, std::to_string(i));
      layers_->push_back(std::to_string(i), s.residual);
    } else {
      auto module = make_layer(l);
      layers_->push_back(std::to_string(i), module);
      s.module = module;
      if (l.type == LayerType::kLinear) {
        s.kind = Step::Kind::kLinear;
        s.linear = torch::nn::Linear(module.ptr<torch::nn::LinearImpl>());
      } else if (l.type == LayerType::kConv2d) {
        s.kind = Step::Kind::kConv2d;
        s.conv = torch::nn::Conv2d(module.ptr<torch::nn::Conv2dImpl>());
        s.stride = l.stride;
        s.padding = l.padding;
        s.groups = l.groups;
      }
      if (s.kind != Step::Kind::kModule) s.weight_name = std::to_string(i) + ".weight";
    }
  }
  // Activation keys: the outputs of the lowered steps (core/lowering.h) the runtime observes
  // for calibration (core/int8_steps.h), by value name: conv/linear [+ batchnorm] [+ relu] and
  // batchnorm [+ relu] name their output by their last layer, a residual block by its own index
  // (the block taps its inner values itself); relu after anything else, pools, flatten and
  // dropout pass their input's qparams through and name nothing.
  const Graph graph = Graph::from_sequential(spec);
  const GraphInfo info = graph.analyze();
  for (const LoweredStep& step : lower(graph)) {
    const bool layer_output = step.output.find('.') == std::string::npos;
    if (layer_output && !passes_quint8_through(graph, info, step)) {
      steps_[std::stoul(step.output)].key = step.output;
    }
  }
}

torch::Tensor NetworkImpl::normalize(const torch::Tensor& x) const { return (x - mean_) / std_; }

torch::Tensor NetworkImpl::forward(const torch::Tensor& input) {
  static const std::string kInputKey = "input";
  const ForwardHooks* hooks = hooks_.empty() ? nullptr : &hooks_;
  const bool tap = hooks != nullptr && hooks->activation;
  const bool hook_weights = hooks != nullptr && hooks->weight;
  auto x = normalize(input);
  if (tap) x = hooks->activation(kInputKey, x);
  for (Step& s : steps_) {
    switch (s.kind) {
      case Step::Kind::kLinear:
        // = LinearImpl::forward
        x = torch::linear(
            x, hook_weights ? hooks->weight(s.weight_name, s.linear->weight) : s.linear->weight,
            s.linear->bias);
        break;
      case Step::Kind::kConv2d:
        // = Conv2dImpl::forward with zero padding and dilation 1
        x = torch::conv2d(
            x, hook_weights ? hooks->weight(s.weight_name, s.conv->weight) : s.conv->weight,
            s.conv->bias, {s.stride, s.stride}, {s.padding, s.padding}, {1, 1}, s.groups);
        break;
      case Step::Kind::kResidual:
        x = s.residual->forward_hooked(x, hooks);
        break;
      case Step::Kind::kModule:
        x = s.module.forward(x);
        break;
    }
    if (tap && !s.key.empty()) x = hooks->activation(s.key, x);
  }
  return x;
}

std::map<std::string, torch::Tensor> NetworkImpl::state() const {
  // Names come out as "layers.3.weight"; the model's names drop the "layers." prefix.
  std::map<std::string, torch::Tensor> out;
  const std::string prefix = "layers.";
  for (const auto& item : named_parameters()) out[item.key().substr(prefix.size())] = item.value();
  for (const auto& item : named_buffers()) {
    if (item.key().find("num_batches_tracked") != std::string::npos) continue;
    out[item.key().substr(prefix.size())] = item.value();
  }
  return out;
}

void NetworkImpl::load(const Model& model) {
  torch::NoGradGuard no_grad;
  auto mine = state();
  for (const auto& info : model.tensor_infos()) {
    auto it = mine.find(info.name);
    MCOMPRESS_CHECK(it != mine.end(), ModelError, "network has no tensor '", info.name, "'");
    it->second.copy_(model.tensor(info.name));
  }
  masks_.clear();
  masked_params_.clear();
  for (const auto& [name, mask] : model.masks) set_mask(name, mask);
}

void NetworkImpl::set_mask(const std::string& name, const torch::Tensor& mask) {
  auto mine = state();
  auto it = mine.find(name);
  MCOMPRESS_CHECK(it != mine.end(), ModelError, "network has no tensor '", name, "' to mask");
  MCOMPRESS_CHECK(mask.defined() && mask.sizes() == it->second.sizes(), ModelError, "mask for '",
                  name, "' must have the tensor's shape ",
                  shape_to_string(it->second.sizes().vec()));
  masks_[name] = mask.to(torch::kBool).contiguous();
  masked_params_[name] = it->second;
  torch::NoGradGuard no_grad;
  it->second.masked_fill_(masks_[name].logical_not(), 0.0f);
}

void NetworkImpl::freeze_batchnorm() {
  for (auto& module : modules(/*include_self=*/false)) {
    if (module->as<torch::nn::BatchNorm1d>() || module->as<torch::nn::BatchNorm2d>()) {
      module->eval();
    }
  }
}

void NetworkImpl::apply_masks() {
  if (masks_.empty()) return;
  torch::NoGradGuard no_grad;
  for (const auto& [name, mask] : masks_) {
    masked_params_.at(name).masked_fill_(mask.logical_not(), 0.0f);
  }
}

void NetworkImpl::store(Model& model) const {
  torch::NoGradGuard no_grad;
  for (const auto& [name, value] : state()) {
    model.tensor(name).copy_(value.detach());
  }
}

}  // namespace mcompress
