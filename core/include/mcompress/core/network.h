#pragma once
// The trainable torch::nn form of a Model: what training, fine-tuning, QAT and distillation
// run. Deployment runs the runtime Executor instead.

#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "mcompress/core/arch_spec.h"
#include "mcompress/core/model.h"
#include "mcompress/core/trainable_network.h"

namespace mcompress {

/// Two 3x3 conv-bn(-relu) with an identity or 1x1 conv-bn projection shortcut (He et al.).
class ResidualBlockImpl : public torch::nn::Module {
 public:
  /// `key`: the block's activation key (its spec layer index) for hook names.
  explicit ResidualBlockImpl(const LayerSpec& spec, const std::string& key = "");
  torch::Tensor forward(const torch::Tensor& x);
  /// forward() with hooks (nullptr: none).
  torch::Tensor forward_hooked(const torch::Tensor& x, const ForwardHooks* hooks);

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
  torch::nn::Sequential shortcut{nullptr};  // empty holder for identity

 private:
  int64_t stride_ = 1;
  torch::nn::Conv2d shortcut_conv_{nullptr};  // the modules of `shortcut`, for the hooks
  torch::nn::BatchNorm2d shortcut_bn_{nullptr};
  // Hook names, built once.
  std::string conv1_weight_, conv2_weight_, shortcut_weight_;
  std::string conv1_key_, conv2_key_, shortcut_key_;
};
TORCH_MODULE(ResidualBlock);

/// Example:
///   Network net(model.spec());
///   net->load(model);            // copy the model's tensors in
///   ... train net ...
///   net->store(model);           // and back
class NetworkImpl : public TrainableNetwork {
 public:
  explicit NetworkImpl(const ArchSpec& spec);

  /// Raw input (as the data set stores it) → logits; normalisation is applied here.
  /// Conv/linear layers run functionally on their registered parameters, so that hooks can
  /// replace the weight; without hooks the result is that of the plain module calls.
  torch::Tensor forward(const torch::Tensor& x) override;
  /// Normalised input of the first layer.
  torch::Tensor normalize(const torch::Tensor& x) const;

  /// Copies the model's tensors into this network's parameters and buffers, and takes its
  /// pruning masks (model.masks).
  void load(const Model& model) override;
  using torch::nn::Module::load;  // keeps LibTorch's load(InputArchive&) visible, not hidden
  /// Pruning masks enforced by apply_masks(), by tensor name (bool, true = kept).
  const std::map<std::string, torch::Tensor>& masks() const override { return masks_; }
  /// Replaces the mask of one tensor (and zeroes what it removes), e.g. during gradual pruning.
  void set_mask(const std::string& name, const torch::Tensor& mask) override;
  void clear_masks() { masks_.clear(); }
  /// Zeroes every masked-out entry; the training loop calls it after every optimizer step, so
  /// pruned weights stay exactly zero whatever the optimizer's momentum or weight decay do.
  void apply_masks() override;
  void freeze_batchnorm() override;
  /// Copies this network's parameters and buffers into the model's tensors.
  void store(Model& model) const override;
  /// The network's tensors by name (parameters and running statistics, no counters).
  std::map<std::string, torch::Tensor> state() const override;

  const ArchSpec& spec() const { return spec_; }
  torch::nn::Sequential& layers() { return layers_; }

 private:
  // One spec layer as forward() runs it.
  struct Step {
    enum class Kind { kModule, kLinear, kConv2d, kResidual } kind = Kind::kModule;
    torch::nn::AnyModule module;                  // kModule (batchnorm, relu, pools, ...)
    torch::nn::Linear linear{nullptr};            // kLinear
    torch::nn::Conv2d conv{nullptr};              // kConv2d
    ResidualBlock residual{nullptr};              // kResidual
    int64_t stride = 1, padding = 0, groups = 1;  // kConv2d
    std::string weight_name;                      // "<i>.weight" for conv/linear
    std::string key;  // activation key produced after this layer, "" for none
  };

  ArchSpec spec_;
  torch::Tensor mean_, std_;  // [1, C, 1, 1] or [1, D]; not state: they come from the spec
  torch::nn::Sequential layers_{nullptr};
  std::vector<Step> steps_;
  std::map<std::string, torch::Tensor> masks_;
  std::map<std::string, torch::Tensor> masked_params_;  // the parameter each mask applies to
};
TORCH_MODULE(Network);

}  // namespace mcompress
