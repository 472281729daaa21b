#pragma once
// Tests only: a sequential model as plain torch::nn modules (Conv2d, BatchNorm2d, Linear, ...
// in a Sequential, residual blocks as He et al. write them), run by their own forward. An
// oracle independent of the graph interpreter (GraphNetwork) and the runtime, which compute
// the same models from the op table: LibTorch's modules are the reference.

#include <torch/torch.h>

#include <map>
#include <string>

#include "mcompress/core/arch_spec.h"
#include "mcompress/core/model.h"

namespace mcompress::testing {

/// Two 3x3 conv-bn(-relu) with an identity or 1x1 conv-bn projection shortcut.
class ReferenceResidualImpl : public torch::nn::Module {
 public:
  explicit ReferenceResidualImpl(const LayerSpec& spec);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
  torch::nn::Sequential shortcut{nullptr};  // empty holder for identity
};
TORCH_MODULE(ReferenceResidual);

/// Example:
///   ReferenceNetwork net(model.spec());
///   net->load(model);
///   net->eval();
///   torch::Tensor logits = net->forward(images);  // raw input; normalised here
class ReferenceNetworkImpl : public torch::nn::Module {
 public:
  explicit ReferenceNetworkImpl(const ArchSpec& spec);
  /// Raw input -> logits: (x - mean) / std, then the layers' own forward.
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor normalize(const torch::Tensor& x) const;
  /// Parameters and running statistics by the model's tensor names (no "layers." prefix, no
  /// num_batches_tracked counters).
  std::map<std::string, torch::Tensor> state() const;
  /// Copies the model's tensors in by name.
  void load(const Model& model);
  using torch::nn::Module::load;

 private:
  torch::Tensor mean_, std_;
  torch::nn::Sequential layers_{nullptr};
};
TORCH_MODULE(ReferenceNetwork);

}  // namespace mcompress::testing
