#include "mcompress/core/lowering.h"

#include <map>

namespace mcompress {
namespace {

// How many nodes read each value; a graph output counts as one more reader, so that a value
// the user asked for is never fused away.
std::map<std::string, int> readers(const Graph& graph) {
  std::map<std::string, int> count;
  for (const Node& node : graph.nodes) {
    for (const std::string& in : node.inputs) ++count[in];
  }
  for (const std::string& out : graph.outputs) ++count[out];
  return count;
}

}  // namespace

int64_t LoweredStep::find(const Graph& graph, const std::string& op) const {
  for (size_t i : nodes) {
    if (graph.nodes[i].op == op) return static_cast<int64_t>(i);
  }
  return -1;
}

std::vector<LoweredStep> lower(const Graph& graph) {
  const auto count = readers(graph);
  // The node reading each value, when exactly one node does.
  std::map<std::string, size_t> sole_reader;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    for (const std::string& in : graph.nodes[i].inputs) {
      if (count.at(in) == 1) sole_reader[in] = i;
    }
  }
  // The node that is the sole reader of `value` and has op `op` (and one input), or none.
  auto absorb = [&](const std::string& value, const std::string& op, size_t& index) {
    const auto it = sole_reader.find(value);
    if (it == sole_reader.end()) return false;
    const Node& next = graph.nodes[it->second];
    if (next.op != op || next.inputs.size() != 1 || next.outputs.size() != 1) return false;
    index = it->second;
    return true;
  };

  std::vector<bool> fused(graph.nodes.size(), false);
  std::vector<LoweredStep> steps;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    if (fused[i]) continue;
    const Node& node = graph.nodes[i];
    LoweredStep step{{i}, node.op, node.outputs.empty() ? "" : node.outputs.back()};
    size_t next = 0;
    const bool relu_fusable = node.op == "Add" || node.op == "BatchNormalization";
    if (relu_fusable && node.outputs.size() == 1 && absorb(step.output, "Relu", next)) {
      step.nodes.push_back(next);  // the int8 plan runs Add + Relu as quantized::add_relu
      step.op += "+Relu";
      step.output = graph.nodes[next].outputs[0];
      fused[next] = true;
    } else if ((node.op == "Conv" || node.op == "Gemm") && node.outputs.size() == 1) {
      if (absorb(step.output, "BatchNormalization", next)) {
        step.nodes.push_back(next);
        step.op += "+BatchNormalization";
        step.output = graph.nodes[next].outputs[0];
        fused[next] = true;
      }
      if (absorb(step.output, "Relu", next)) {
        step.nodes.push_back(next);
        step.op += "+Relu";
        step.output = graph.nodes[next].outputs[0];
        fused[next] = true;
      }
    }
    steps.push_back(std::move(step));
  }
  return steps;
}

}  // namespace mcompress
