#pragma once
// The trainable torch::nn form of a Graph (core/graph.h): an interpreter that evaluates the
// graph's nodes in order over a value map, with one LibTorch kernel per op of the op table.
// Additive for now: Network (core/network.h) still trains the sequential models and
// runtime::Executor still runs chains; GraphNetwork gives the same numbers as Network on
// Graph::from_sequential(spec) and runs graphs Network cannot (resnet18, mobilenetv2).

#include <torch/torch.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "mcompress/core/graph.h"
#include "mcompress/core/model.h"
#include "mcompress/core/trainable_network.h"

namespace mcompress {

/// Example:
///   GraphNetwork net(Graph::from_sequential(model.spec()));
///   net->load(model);                       // the model's tensors, by name
///   torch::Tensor logits = net->forward(x);  // raw input; preprocessing applied here
///   net->store(model);
///
/// Every parameter tensor the op schema lists for a node is registered under its exact name
/// ("5.conv1.weight", "layer1.0.downsample.0.weight"): one nested submodule per name component
/// (torch::nn forbids '.' in a parameter name), so named_parameters() and named_buffers() keys
/// are the graph's tensor names. Trainable tensors are parameters, running statistics buffers.
class GraphNetworkImpl : public TrainableNetwork {
 public:
  /// Validates the graph (ModelError naming the node otherwise) and creates its tensors,
  /// initialised as PyTorch initialises the same layers (from torch's global generator).
  explicit GraphNetworkImpl(Graph graph);

  /// The single graph input (raw, as the data set stores it) -> the single graph output.
  torch::Tensor forward(const torch::Tensor& x) override;
  /// Every graph input, in the graph's order -> every graph output, in order.
  std::vector<torch::Tensor> run(const std::vector<torch::Tensor>& inputs);
  /// The preprocessing applied to the first input ((x - mean) / std, or x).
  torch::Tensor preprocess(const torch::Tensor& x) const;

  /// The tensors by name (parameters and running statistics), sharing storage with this module.
  std::map<std::string, torch::Tensor> state() const override;
  /// Copies the model's tensors in (ModelError naming a tensor the graph lacks or whose shape
  /// differs) and takes its pruning masks.
  void load(const Model& model) override;
  /// Copies exactly these tensors in: ModelError naming a missing, extra or misshapen tensor.
  void load(const std::map<std::string, torch::Tensor>& tensors);
  using torch::nn::Module::load;  // keeps LibTorch's load(InputArchive&) visible
  /// Copies this network's tensors into the model's tensors of the same names.
  void store(Model& model) const override;

  /// Pruning masks by tensor name, as NetworkImpl: set_mask zeroes what the mask removes,
  /// apply_masks (after each optimizer step) keeps it zero.
  void set_mask(const std::string& name, const torch::Tensor& mask) override;
  void apply_masks() override;
  void clear_masks() { masks_.clear(); }
  const std::map<std::string, torch::Tensor>& masks() const override { return masks_; }

  /// Training mode as torch::nn::Module::train, and batchnorm unfrozen.
  void train(bool on = true) override;
  void freeze_batchnorm() override { batchnorm_frozen_ = true; }

  const Graph& graph() const { return graph_; }
  const GraphInfo& info() const { return info_; }

  /// One node ready to run: its inputs and outputs as value slots, its kernel.
  struct Step;

 private:
  torch::Tensor& add_tensor(const GraphParam& param);

  Graph graph_;
  GraphInfo info_;
  torch::Tensor mean_, std_;  // broadcastable over the first input; undefined for kNone
  std::vector<std::shared_ptr<Step>> steps_;
  std::vector<int64_t> input_slots_, output_slots_;
  int64_t num_slots_ = 0;
  std::map<std::string, torch::Tensor> tensors_;  // every parameter and buffer, by name
  std::map<std::string, torch::Tensor> masks_;
  bool batchnorm_frozen_ = false;
};
TORCH_MODULE(GraphNetwork);

/// GraphNetwork's computation of one node in inference mode (batchnorm on its running
/// statistics, dropout off), for executors that run the nodes they do not fuse themselves.
/// `attrs`: the node's attributes with defaults filled in (GraphInfo::attrs); `params`: its
/// parameter tensors by role ("weight", "bias", ...); `info`: the graph's value shapes.
using InferenceKernel = std::function<torch::Tensor(const std::vector<torch::Tensor>& inputs)>;
InferenceKernel inference_kernel(const Node& node, const nlohmann::json& attrs,
                                 const std::map<std::string, torch::Tensor>& params,
                                 const GraphInfo& info);

/// The ops GraphNetwork has a kernel for, in the order of its dispatch table (every op of
/// op_schemas()).
std::vector<std::string> graph_network_ops();

}  // namespace mcompress
