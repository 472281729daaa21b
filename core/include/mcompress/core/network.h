#pragma once
// The trainable torch::nn form of a Model: what training, fine-tuning, QAT and distillation
// run. Deployment runs the runtime Executor instead.

#include <torch/torch.h>

#include "mcompress/core/arch_spec.h"
#include "mcompress/core/model.h"

namespace mcompress {

/// Two 3x3 conv-bn(-relu) with an identity or 1x1 conv-bn projection shortcut (He et al.).
class ResidualBlockImpl : public torch::nn::Module {
 public:
  explicit ResidualBlockImpl(const LayerSpec& spec);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
  torch::nn::Sequential shortcut{nullptr};  // empty holder for identity
};
TORCH_MODULE(ResidualBlock);

/// Example:
///   Network net(model.spec());
///   net->load(model);            // copy the model's tensors in
///   ... train net ...
///   net->store(model);           // and back
class NetworkImpl : public torch::nn::Module {
 public:
  explicit NetworkImpl(const ArchSpec& spec);

  /// Raw input (as the data set stores it) → logits; normalisation is applied here.
  torch::Tensor forward(const torch::Tensor& x);
  /// Normalised input of the first layer.
  torch::Tensor normalize(const torch::Tensor& x) const;

  /// Copies the model's tensors into this network's parameters and buffers.
  void load(const Model& model);
  /// Copies this network's parameters and buffers into the model's tensors.
  void store(Model& model) const;
  /// The network's tensors by name (parameters and running statistics, no counters).
  std::map<std::string, torch::Tensor> state() const;

  const ArchSpec& spec() const { return spec_; }
  torch::nn::Sequential& layers() { return layers_; }

 private:
  ArchSpec spec_;
  torch::Tensor mean_, std_;  // [1, C, 1, 1] or [1, D]; not state: they come from the spec
  torch::nn::Sequential layers_{nullptr};
};
TORCH_MODULE(Network);

}  // namespace mcompress
