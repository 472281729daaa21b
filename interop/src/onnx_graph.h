#pragma once
// Private: a thin builder over onnx::GraphProto that names values uniquely and converts
// ATen tensors to initializers, so that the exporter reads as the graph it emits.

#include <ATen/core/Tensor.h>
#include <onnx/onnx_pb.h>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace mcompress::interop {

/// One node attribute: an int, a list of ints or a float.
struct OnnxAttr {
  std::string name;
  enum class Kind { kInt, kInts, kFloat } kind = Kind::kInt;
  int64_t i = 0;
  std::vector<int64_t> ints;
  float f = 0;

  static OnnxAttr Int(std::string name, int64_t v);
  static OnnxAttr Ints(std::string name, std::vector<int64_t> v);
  static OnnxAttr Float(std::string name, float v);
};

class OnnxGraph {
 public:
  explicit OnnxGraph(onnx::GraphProto* graph) : graph_(graph) {}

  /// Adds `tensor` (float, half, bfloat16, int8, uint8, int32, int64; any shape, a 0-dim
  /// tensor is a scalar) as an initializer named after `hint`; returns the name it got.
  std::string initializer(const std::string& hint, const at::Tensor& tensor);
  /// Adds a node; each output gets a unique name derived from `hint`. Returns the outputs.
  std::vector<std::string> node(const std::string& op, const std::vector<std::string>& inputs,
                                const std::string& hint, const std::vector<OnnxAttr>& attrs = {},
                                int outputs = 1, const std::string& domain = "");
  /// A node with one output called exactly `output` (a graph output).
  void named(const std::string& op, const std::vector<std::string>& inputs,
             const std::string& output);
  /// node() with one output.
  std::string op(const std::string& op, const std::vector<std::string>& inputs,
                 const std::string& hint, const std::vector<OnnxAttr>& attrs = {});

  /// Declares a graph input / output of element type `elem` with a symbolic first dimension.
  void input(const std::string& name, int32_t elem, const std::vector<int64_t>& dims,
             const std::string& batch_dim);
  void output(const std::string& name, int32_t elem, const std::vector<int64_t>& dims,
              const std::string& batch_dim);

  /// A name not used yet, from `hint`.
  std::string unique(const std::string& hint);

 private:
  onnx::GraphProto* graph_;
  std::set<std::string> used_;
  int64_t counter_ = 0;
};

}  // namespace mcompress::interop
