#pragma once
// The one lowering of a graph for deployment (the "Graph models" design): which nodes run as
// one kernel. A Conv or Gemm whose output only a BatchNormalization reads is fused with it (the
// batchnorm is folded into the weights), and a Relu that alone reads the result runs inside
// the same kernel, as does a Relu that alone reads an Add's result (quantized::add_relu) or a
// BatchNormalization's that follows no Conv/Gemm; every other node is a step of its own. The
// runtime Executor plans every model with it; calibration names activations by the steps'
// output values.

#include <cstddef>
#include <string>
#include <vector>

#include "mcompress/core/graph.h"

namespace mcompress {

struct LoweredStep {
  std::vector<size_t> nodes;  // graph node indices, in order; the first is the anchor
  std::string op;             // the nodes' ops joined by '+', e.g. "Conv+BatchNormalization+Relu"
  std::string output;         // the value the step produces: its last node's output

  /// Index of the step's node with op `op`, or -1.
  int64_t find(const Graph& graph, const std::string& op) const;
};

/// The steps of a valid graph (Graph::analyze), in an order that respects every dependency:
/// a fused step takes its anchor's place, which is legal because the fused nodes read nothing
/// but the anchor's result.
std::vector<LoweredStep> lower(const Graph& graph);

}  // namespace mcompress
