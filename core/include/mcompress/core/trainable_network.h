#pragma once
// What the training loop (core/train.h) and the stages' training hooks need of a network, so
// that one loop trains both forms: NetworkImpl (sequential models, core/network.h) and
// GraphNetworkImpl (any graph, core/graph_network.h).

#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>

namespace mcompress {

class Model;

/// Optional taps into a network's forward pass, e.g. the fake quantization of QAT or the hint
/// of a distillation. Either may be empty. Both return the tensor the forward pass continues
/// with (the argument, to observe only).
struct ForwardHooks {
  /// Every Conv/Gemm (conv/linear) weight just before it is used, by tensor name: "3.weight",
  /// "5.conv1.weight", "features.1.conv.0.0.weight".
  std::function<torch::Tensor(const std::string& tensor_name, const torch::Tensor& w)> weight;
  /// Every activation the runtime calibrates (runtime::Executor::run_observed), by the same
  /// key and in the same order: "input" (after the preprocessing), then the output of every
  /// lowered step (core/lowering.h) that does not pass its input's qparams through
  /// (core/int8_steps.h), by value name, taken after the step's last node (its Relu, if fused).
  std::function<torch::Tensor(const std::string& key, const torch::Tensor& x)> activation;

  bool empty() const { return !weight && !activation; }
};

class TrainableNetwork : public torch::nn::Module {
 public:
  /// Raw input (as the data set stores it) -> logits; the preprocessing is applied here.
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;
  /// The tensors by name (parameters and running statistics), sharing storage with the module.
  virtual std::map<std::string, torch::Tensor> state() const = 0;
  /// Copies the model's tensors in (and takes its pruning masks); copies this network's
  /// tensors back into the model's tensors of the same names.
  virtual void load(const Model& model) = 0;
  virtual void store(Model& model) const = 0;
  using torch::nn::Module::load;  // keeps LibTorch's load(InputArchive&) visible

  /// Pruning masks by tensor name (bool, true = kept). set_mask zeroes what the mask removes;
  /// apply_masks, which the training loop calls after every optimizer step, keeps it zero
  /// whatever the optimizer's momentum or weight decay do.
  virtual const std::map<std::string, torch::Tensor>& masks() const = 0;
  virtual void set_mask(const std::string& name, const torch::Tensor& mask) = 0;
  virtual void apply_masks() = 0;

  /// Batchnorm layers use and keep their running statistics while the rest trains, until the
  /// next train() call (TrainOptions::freeze_batchnorm, re-applied every epoch).
  virtual void freeze_batchnorm() = 0;

  /// Hooks applied by every later forward (replacing any set before). What they capture must
  /// stay valid until clear_hooks().
  void set_hooks(ForwardHooks hooks) { hooks_ = std::move(hooks); }
  void clear_hooks() { hooks_ = ForwardHooks{}; }
  const ForwardHooks& hooks() const { return hooks_; }

 protected:
  ForwardHooks hooks_;
};

/// The trainable form of `model`, its tensors and masks loaded: NetworkImpl for a sequential
/// model, GraphNetworkImpl for a graph model (core/src/train.cpp).
std::shared_ptr<TrainableNetwork> make_network(const Model& model);

}  // namespace mcompress
