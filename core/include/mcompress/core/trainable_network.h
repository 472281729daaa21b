#pragma once
// What the training loop (core/train.h) and the stages' training hooks need of a network, so
// that one loop trains both forms: NetworkImpl (sequential models, core/network.h) and
// GraphNetworkImpl (any graph, core/graph_network.h).

#include <torch/torch.h>

#include <map>
#include <string>

namespace mcompress {

class TrainableNetwork : public torch::nn::Module {
 public:
  /// Raw input (as the data set stores it) -> logits; the preprocessing is applied here.
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;
  /// The tensors by name (parameters and running statistics), sharing storage with the module.
  virtual std::map<std::string, torch::Tensor> state() const = 0;

  /// Pruning masks by tensor name (bool, true = kept). set_mask zeroes what the mask removes;
  /// apply_masks, which the training loop calls after every optimizer step, keeps it zero
  /// whatever the optimizer's momentum or weight decay do.
  virtual const std::map<std::string, torch::Tensor>& masks() const = 0;
  virtual void set_mask(const std::string& name, const torch::Tensor& mask) = 0;
  virtual void apply_masks() = 0;

  /// Batchnorm layers use and keep their running statistics while the rest trains, until the
  /// next train() call (TrainOptions::freeze_batchnorm, re-applied every epoch).
  virtual void freeze_batchnorm() = 0;
};

}  // namespace mcompress
