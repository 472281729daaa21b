#pragma once
// Named graph models for 1x28x28 inputs and 10 classes, built in code: the architectures the
// sequential zoo (core/zoo.h) cannot express. Their tensor names are torchvision's state_dict
// keys (less num_batches_tracked), so torchvision weights load by name.

#include <string>
#include <vector>

#include "mcompress/core/graph.h"
#include "mcompress/core/zoo.h"

namespace mcompress {

/// Names and one-line summaries of the graph zoo, in display order.
std::vector<ZooEntry> zoo_graph_entries();
/// The graph of a graph-zoo model; ConfigError listing the names for an unknown one.
/// Example: GraphNetwork net(zoo_graph("resnet18"));
Graph zoo_graph(const std::string& name);

}  // namespace mcompress
