#pragma once
// The op table of graph models (core/graph.h): one OpSchema row per op, registered once in
// core/src/op_schema.cpp. A row holds everything the rest of the code may ask about an op: its
// attributes with defaults and bounds, its input/output arity, shape inference, and the
// parameter tensors a node of it owns (role, shape, output-channel axis, compressible or not).
// Op names and semantics follow ONNX; the differences are listed in docs/architecture.md.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace mcompress {

/// Largest size of one known dimension (2^40): large enough for any tensor that fits in
/// memory, small enough that sums of a few dimensions and attribute values cannot overflow.
constexpr int64_t kMaxDimSize = int64_t{1} << 40;
/// Largest tensor rank a graph value may have.
constexpr int64_t kMaxRank = 8;
/// Largest kernel size, stride, dilation and padding of Conv and the pools.
constexpr int64_t kMaxWindowAttr = 65536;
/// Most values in one list attribute (kernel_shape, pads, shape, ...).
constexpr int64_t kMaxAttrListLength = 64;
/// Most inputs of one node (Concat is the only op with a variable count).
constexpr int64_t kMaxNodeInputs = 4096;

/// One dimension of a value: a known size (symbol empty) or a symbol such as "batch". A
/// dimension computed from symbols is the expression as text ("batch*784").
struct Dim {
  int64_t value = 0;
  std::string symbol;

  Dim() = default;
  Dim(int64_t size) : value(size) {}  // NOLINT(google-explicit-constructor): {1, 28, 28}
  static Dim named(std::string symbol);
  bool known() const { return symbol.empty(); }
  bool operator==(const Dim& other) const { return value == other.value && symbol == other.symbol; }
  bool operator!=(const Dim& other) const { return !(*this == other); }
  std::string to_string() const;
};

/// A shape with symbolic dimensions, batch first: {Dim::named("batch"), 1, 28, 28}.
using SymShape = std::vector<Dim>;
/// "[batch, 1, 28, 28]".
std::string to_string(const SymShape& shape);

/// Element types of graph values.
enum class DType { kFloat32, kInt64 };
/// "float32", "int64".
std::string to_string(DType dtype);
/// Parses "float32" or "int64"; ModelError listing both on anything else.
DType parse_dtype(const std::string& name);

/// The kind of an attribute value in a node's `attrs` object.
enum class AttrKind {
  kInt,    // a JSON integer
  kInts,   // a JSON array of integers
  kFloat,  // a JSON number
};

/// One attribute of an op. Integers (each element of kInts) must lie in [min_int, max_int];
/// floats in [min_float, max_float] and be finite. Further checks that involve other attributes
/// or the input shapes (groups divides channels, pads per spatial axis) are in `infer`.
struct AttrSpec {
  std::string name;
  AttrKind kind = AttrKind::kInt;
  /// Filled in when the node omits the attribute. Null: the attribute is required, unless
  /// `optional` (then absent means "not set", e.g. Clip's min).
  nlohmann::json default_value;
  bool optional = false;
  int64_t min_int = INT64_MIN, max_int = INT64_MAX;
  double min_float = -1e300, max_float = 1e300;
};

/// A parameter tensor of a node, named "<node>.<role>" unless the node's `params` renames it.
struct ParamSpec {
  std::string role;            // "weight", "bias", "running_mean", "running_var"
  std::vector<int64_t> shape;  // known sizes: parameters never have symbolic dimensions
  bool trainable = true;       // false for running statistics (buffers)
  bool compressible = false;   // a weight that pruning and weight quantization may change
  int64_t channel_axis = -1;   // the output-channel axis (per-channel scales), -1 for none
};

/// What shape inference and the parameter list of one node see.
struct OpContext {
  const std::string& node;                // node name, for messages
  const std::string& op;                  // op name, for messages
  const nlohmann::json& attrs;            // checked against the schema, defaults filled in
  const std::vector<SymShape>& inputs;    // input shapes
  const std::vector<DType>& input_types;  // input dtypes

  bool has(const std::string& attr) const { return attrs.contains(attr); }
  int64_t get_int(const std::string& attr) const;
  std::vector<int64_t> get_ints(const std::string& attr) const;
  double get_float(const std::string& attr) const;
  /// Throws ModelError "node '<node>' (<op>): <field>: <message>".
  [[noreturn]] void fail(const std::string& field, const std::string& message) const;
};

/// One op. Example (a row of the table in op_schema.cpp):
///   {"Relu", "max(x, 0)", 1, 1, 1, {}, /*float_inputs=*/true, same_shape, nullptr}
struct OpSchema {
  std::string op;       // ONNX name ("Conv") or, for ops ONNX lacks, ours ("SiLU")
  std::string summary;  // one line: semantics and what differs from ONNX
  int64_t min_inputs = 1, max_inputs = 1;  // max_inputs -1: up to kMaxNodeInputs
  int64_t num_outputs = 1;
  std::vector<AttrSpec> attrs;
  /// true: every input must be float32; false: inputs may be any dtype but all the same.
  bool float_inputs = true;
  /// Output shapes from the input shapes; throws ModelError through OpContext::fail.
  std::function<std::vector<SymShape>(const OpContext&)> infer;
  /// The node's parameter tensors (nullptr: none), called after `infer` succeeded.
  std::function<std::vector<ParamSpec>(const OpContext&)> params;

  /// The node's attributes checked against `attrs` (unknown or missing names, kinds, bounds)
  /// with defaults filled in; ModelError naming `node` and the attribute otherwise.
  nlohmann::json resolve_attrs(const std::string& node, const nlohmann::json& given) const;
};

/// Every op, in the order of the table.
const std::vector<OpSchema>& op_schemas();
/// The schema of `op`, or nullptr.
const OpSchema* find_op_schema(const std::string& op);
/// The schema of `op`; ModelError listing the ops for an unknown one.
const OpSchema& op_schema(const std::string& op);

/// int64 arithmetic that throws ModelError("<what>: integer overflow ...") instead of
/// overflowing.
int64_t checked_add(int64_t a, int64_t b, const std::string& what);
int64_t checked_sub(int64_t a, int64_t b, const std::string& what);
int64_t checked_mul(int64_t a, int64_t b, const std::string& what);

}  // namespace mcompress
