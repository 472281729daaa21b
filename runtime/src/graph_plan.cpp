#include "graph_plan.h"

#include <ATen/ATen.h>

#include <map>
#include <string>

#include "mcompress/core/error.h"
#include "mcompress/core/graph_network.h"
#include "mcompress/core/lowering.h"

namespace mcompress::runtime {
namespace {

using json = nlohmann::json;

// One value per channel, shaped to broadcast over an input of `rank` ([1, C, 1, ...]).
at::Tensor per_channel(const std::vector<double>& values, size_t rank) {
  std::vector<int64_t> shape(rank, 1);
  if (rank >= 2) shape[1] = static_cast<int64_t>(values.size());
  return at::tensor(values, at::kFloat).reshape(shape);
}

// The nodes' parameter tensors by node, then role, as the model holds them.
std::map<std::string, std::map<std::string, at::Tensor>> params_by_node(const Model& model,
                                                                        const GraphInfo& info) {
  std::map<std::string, std::map<std::string, at::Tensor>> out;
  for (const GraphParam& p : info.params) out[p.node][p.spec.role] = model.tensor(p.name);
  return out;
}

std::string node_range(const Graph& graph, const LoweredStep& step) {
  const std::string& first = graph.nodes[step.nodes.front()].name;
  const std::string& last = graph.nodes[step.nodes.back()].name;
  return first == last ? first : first + ".." + last;
}

}  // namespace

GraphPlan::GraphPlan(const Model& model) {
  const Graph& graph = model.graph();
  const GraphInfo info = graph.analyze();
  MCOMPRESS_CHECK(graph.inputs.size() == 1 && graph.outputs.size() == 1, ModelError, "'",
                  model.name(), "': the executor runs graphs of one input and one output, got ",
                  graph.inputs.size(), " and ", graph.outputs.size());
  const ValueInfo& input = graph.inputs[0];
  for (size_t d = 1; d < input.shape.size(); ++d) {
    MCOMPRESS_CHECK(input.shape[d].known(), ModelError, "'", model.name(), "': input '", input.name,
                    "' has the symbolic size '", input.shape[d].symbol, "' at axis ", d,
                    "; the executor needs every size but the batch's");
    input_shape_.push_back(input.shape[d].value);
  }
  num_classes_ = graph.task.num_classes;
  if (graph.preprocess.kind == Preprocess::Kind::kNormalize) {
    mean_ = per_channel(graph.preprocess.mean, input.shape.size());
    std_ = per_channel(graph.preprocess.std, input.shape.size());
  }

  std::map<std::string, int64_t> slots;
  auto slot_of = [&](const std::string& value) {
    const auto it = slots.find(value);
    return it != slots.end() ? it->second : (slots[value] = num_slots_++);
  };
  input_slot_ = slot_of(input.name);
  const auto params = params_by_node(model, info);
  static const std::map<std::string, at::Tensor> kNone;
  auto params_of = [&](const Node& node) -> const std::map<std::string, at::Tensor>& {
    const auto it = params.find(node.name);
    return it == params.end() ? kNone : it->second;
  };

  std::map<int64_t, size_t> last_reader;
  for (const LoweredStep& lowered : lower(graph)) {
    const size_t anchor_index = lowered.nodes.front();
    const Node& anchor = graph.nodes[anchor_index];
    Step step;
    PlanStep shown{node_range(graph, lowered), lowered.op, "fp32-dense", ""};
    const int64_t bn_index = lowered.find(graph, "BatchNormalization");
    const bool relu = lowered.find(graph, "Relu") >= 0;
    if (lowered.nodes.size() == 1) {
      step.run = inference_kernel(anchor, info.attrs[anchor_index], params_of(anchor), info);
    } else {
      // Conv/Gemm [+ BatchNormalization] [+ Relu]: the batchnorm folded into the weights (the
      // anchor then always has a bias), the relu applied in place on the step's output.
      std::map<std::string, at::Tensor> folded = params_of(anchor);
      json attrs = info.attrs[anchor_index];
      if (bn_index >= 0) {
        const Node& bn = graph.nodes[static_cast<size_t>(bn_index)];
        const auto& stats = params_of(bn);
        const at::Tensor& weight = folded.at("weight");
        const at::Tensor bias =
            folded.count("bias") != 0 ? folded.at("bias") : at::zeros({weight.size(0)}, at::kFloat);
        const AffineWeights w =
            fold_batchnorm({weight, bias},
                           {stats.at("weight"), stats.at("bias"), stats.at("running_mean"),
                            stats.at("running_var"),
                            info.attrs[static_cast<size_t>(bn_index)].at("epsilon").get<double>()});
        folded["weight"] = w.weight;
        folded["bias"] = w.bias;
        attrs["bias"] = 1;
        shown.note = "batchnorm folded";
      }
      Node fused = anchor;
      fused.outputs = {anchor.outputs[0]};
      auto kernel = inference_kernel(fused, attrs, folded, info);
      step.run = relu ? decltype(step.run)([kernel](const std::vector<at::Tensor>& in) {
        return kernel(in).relu_();
      })
                      : kernel;
    }
    for (const std::string& in : anchor.inputs) {
      step.inputs.push_back(slot_of(in));
      last_reader[step.inputs.back()] = steps_.size();
    }
    step.value = lowered.output;
    step.output = slot_of(lowered.output);
    steps_.push_back(std::move(step));
    shown_.push_back(std::move(shown));
  }
  output_slot_ = slot_of(graph.outputs[0]);
  last_reader.erase(output_slot_);
  for (const auto& [slot, index] : last_reader) steps_[index].release.push_back(slot);
}

at::Tensor GraphPlan::run(const at::Tensor& input, const ActivationSink* sink) const {
  std::vector<at::Tensor> values(static_cast<size_t>(num_slots_));
  at::Tensor x = input.to(at::kFloat);
  if (mean_.defined()) x = (x - mean_) / std_;
  if (sink != nullptr) (*sink)("input", x);
  values[static_cast<size_t>(input_slot_)] = std::move(x);
  std::vector<at::Tensor> args;
  for (const Step& step : steps_) {
    args.clear();
    for (int64_t s : step.inputs) args.push_back(values[static_cast<size_t>(s)]);
    at::Tensor out = step.run(args);
    if (sink != nullptr) (*sink)(step.value, out);
    values[static_cast<size_t>(step.output)] = std::move(out);
    for (int64_t s : step.release) values[static_cast<size_t>(s)] = at::Tensor();
  }
  return values[static_cast<size_t>(output_slot_)];
}

}  // namespace mcompress::runtime
