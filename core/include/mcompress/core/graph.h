#pragma once
// A model architecture as a graph of ONNX-style ops (the "Graph models" design): named inputs
// with symbolic shapes, nodes in topological order, named outputs, the preprocessing and the
// task. Parameter tensors are not stored here: each node owns the tensors its OpSchema lists,
// named "<node>.<role>" like PyTorch state_dict keys. Serialised as the graph document
// {"format": "mcompress-graph", "version": 1, ...} (docs/architecture.md).
//
// Network and the runtime Executor do not use graphs yet; Graph::from_sequential maps today's
// ArchSpec onto one with exactly today's tensor names.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "mcompress/core/arch_spec.h"
#include "mcompress/core/op_schema.h"

namespace mcompress {

/// Limits of a graph document, checked before anything recursive or large runs on it.
constexpr int64_t kGraphMaxDepth = 64;                // JSON nesting levels
constexpr int64_t kGraphMaxDocumentBytes = 64 << 20;  // document text
constexpr int64_t kGraphMaxNodes = 100000;
constexpr int64_t kGraphMaxInputs = 1024;        // graph inputs, and graph outputs
constexpr int64_t kGraphMaxStringLength = 1024;  // names, ops, symbols, kinds
constexpr int64_t kGraphMaxChannels = 1 << 20;   // mean/std values

/// The document's "format" and the newest "version" this code reads and writes.
inline constexpr const char* kGraphFormat = "mcompress-graph";
constexpr int64_t kGraphVersion = 1;

/// A graph input (or an inferred value): name, element type, shape.
struct ValueInfo {
  std::string name;
  DType dtype = DType::kFloat32;
  SymShape shape;
  bool operator==(const ValueInfo& o) const {
    return name == o.name && dtype == o.dtype && shape == o.shape;
  }
};

/// One op application. `attrs` as written (defaults are filled in by validation, not here);
/// `params` renames parameter tensors by role ({"weight": "features.0.weight"}); a role not
/// listed is named "<name>.<role>".
struct Node {
  std::string name;
  std::string op;
  std::vector<std::string> inputs, outputs;
  nlohmann::json attrs = nlohmann::json::object();
  std::map<std::string, std::string> params;
  bool operator==(const Node& o) const {
    return name == o.name && op == o.op && inputs == o.inputs && outputs == o.outputs &&
           attrs == o.attrs && params == o.params;
  }
};

/// What is applied to the first graph input before the first node: (x - mean) / std per
/// channel (axis 1; one value applies to every channel), or nothing.
struct Preprocess {
  enum class Kind { kNone, kNormalize } kind = Kind::kNone;
  std::vector<double> mean, std;
  bool operator==(const Preprocess& o) const {
    return kind == o.kind && mean == o.mean && std == o.std;
  }
};

/// What the graph's output means. Classification: one float32 output [batch, num_classes],
/// batch being the first input's first dimension.
struct Task {
  enum class Kind { kClassification } kind = Kind::kClassification;
  int64_t num_classes = 0;
  bool operator==(const Task& o) const { return kind == o.kind && num_classes == o.num_classes; }
};

/// A parameter tensor of a validated graph.
struct GraphParam {
  std::string name;  // "<node>.<role>" or the node's override
  std::string node;
  ParamSpec spec;  // role, shape, trainable, compressible, channel axis
};

/// What validation computes: every value's dtype and shape, the attributes with defaults filled
/// in (by node index), and the parameter tensors in node order.
struct GraphInfo {
  std::map<std::string, ValueInfo> values;
  std::vector<nlohmann::json> attrs;
  std::vector<GraphParam> params;
};

/// Example:
///   Graph g = Graph::from_sequential(zoo_spec("resnet8"));
///   GraphInfo info = g.analyze();             // ModelError naming node and field if invalid
///   info.values.at(g.outputs[0]).shape;       // [batch, 10]
///   std::string doc = g.to_json_text(2);      // the graph document
///   Graph again = Graph::from_json_text(doc);  // again == g
struct Graph {
  std::string name;  // what reports call the model ("resnet18"); may be empty
  std::vector<ValueInfo> inputs;
  std::vector<Node> nodes;  // topologically ordered: a node uses only values defined before it
  std::vector<std::string> outputs;
  Preprocess preprocess;
  Task task;

  bool operator==(const Graph& o) const {
    return name == o.name && inputs == o.inputs && nodes == o.nodes && outputs == o.outputs &&
           preprocess == o.preprocess && task == o.task;
  }

  /// Checks the whole graph and infers every value's shape. Throws ModelError whose one-line
  /// message names the node (or input/output/preprocess/task) and the field, with what was got
  /// and what was expected: unknown op, unknown/missing/bad attribute, arity, an input that is
  /// never defined or only defined later, duplicate node/value/parameter names, shapes that do
  /// not agree, integer overflow, outputs that do not fit the task.
  GraphInfo analyze() const;
  /// analyze(), discarding the result.
  void validate() const { (void)analyze(); }
  /// The parameter tensors (analyze().params).
  std::vector<GraphParam> parameters() const { return analyze().params; }

  /// The graph document. to_json() does not validate; from_json() checks the document's
  /// structure (keys, types, limits; ModelError with the JSON path, "$.nodes[3].inputs[0]") and
  /// then validate()s the graph.
  nlohmann::json to_json() const;
  std::string to_json_text(int indent = -1) const;
  static Graph from_json(const nlohmann::json& doc);
  /// Rejects text over kGraphMaxDocumentBytes or nested deeper than kGraphMaxDepth before
  /// parsing it.
  static Graph from_json_text(const std::string& text);

  /// Today's sequential spec as a graph: input "input" [batch, ...input_shape], one node per
  /// layer named by its index ("3"), a residual block i expanded into "i.conv1", "i.bn1",
  /// "i.relu1", "i.conv2", "i.bn2", ["i.shortcut.0", "i.shortcut.1",] "i.add" and the Relu
  /// "i". Every value is named after the node that produces it; the parameter names are the
  /// spec's tensor names (ArchSpec::tensors()), in the same order.
  static Graph from_sequential(const ArchSpec& given);
};

}  // namespace mcompress
