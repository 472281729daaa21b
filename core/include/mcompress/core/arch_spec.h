#pragma once
// A model architecture described as data: an input shape, the preprocessing, and a list of
// layers. Serialised as JSON (stored in every model file and accepted by `train --spec`).

#include <cstdint>
#include <string>
#include <vector>

namespace mcompress {

/// Layer kinds. The integer values are not stored anywhere; files store the names.
enum class LayerType {
  kLinear,
  kConv2d,
  kBatchNorm1d,
  kBatchNorm2d,
  kReLU,
  kMaxPool2d,
  kAvgPool2d,
  kAdaptiveAvgPool2d,
  kFlatten,
  kDropout,
  kResidual,
};

/// "linear", "conv2d", ... as used in spec JSON.
std::string to_string(LayerType type);
/// Parses a JSON type name; ModelError listing the accepted names on anything else.
LayerType parse_layer_type(const std::string& name);

/// One layer. Only the fields of its type are meaningful; `from_json` rejects any other field.
/// Fields left 0 that can be inferred (in_features, in_channels, num_features) are filled in by
/// ArchSpec::resolved() from the shape flowing into the layer.
struct LayerSpec {
  LayerType type = LayerType::kReLU;
  int64_t in_features = 0, out_features = 0;  // linear
  int64_t in_channels = 0, out_channels = 0;  // conv2d, residual
  int64_t kernel_size = 0, stride = 0,
          padding = 0;       // conv2d, pools (stride 0 = kernel_size for pools, 1 for conv)
  int64_t groups = 1;        // conv2d
  bool bias = true;          // linear, conv2d
  int64_t num_features = 0;  // batchnorm
  double eps = 1e-5, momentum = 0.1;  // batchnorm
  int64_t output_size = 1;            // adaptive_avgpool2d (square output)
  double p = 0.5;                     // dropout
  bool projection = false;            // residual: force a 1x1 conv shortcut
};

/// The role a stored tensor plays; running statistics are not trained by the optimizer.
enum class TensorRole { kWeight, kBias, kRunningMean, kRunningVar };

/// A tensor the architecture owns, named like a PyTorch state_dict key ("3.weight",
/// "5.conv1.weight", "5.shortcut.1.running_var").
struct TensorInfo {
  std::string name;
  std::vector<int64_t> shape;
  TensorRole role = TensorRole::kWeight;
  int64_t layer = 0;  // index of the owning layer in ArchSpec::layers
};

/// Elements of the weight and bias tensors among `tensors` (running statistics excluded).
int64_t parameter_count(const std::vector<TensorInfo>& tensors);

/// Example:
///   ArchSpec spec = ArchSpec::from_json_text(R"({"input_shape":[1,28,28],"num_classes":10,
///     "layers":[{"type":"flatten"},{"type":"linear","out_features":10}]})");
struct ArchSpec {
  std::string name;                  // zoo name or free text
  std::vector<int64_t> input_shape;  // without the batch dimension: {C,H,W} or {D}
  int64_t num_classes = 10;
  std::vector<double> mean{0.0};  // per input channel (or one value for all)
  std::vector<double> std{1.0};
  std::vector<LayerSpec> layers;

  /// Parses and validates a JSON document; unknown layer types and fields, and bad values,
  /// throw ModelError naming the layer index and field. The result is resolved().
  static ArchSpec from_json_text(const std::string& text);
  std::string to_json_text(int indent = -1) const;

  /// Output shape (without batch) after each layer; throws ModelError naming the layer
  /// when shapes do not chain or the last one is not {num_classes}.
  std::vector<std::vector<int64_t>> infer_shapes() const;
  /// A copy with the inferable fields filled in and checked against the shapes.
  ArchSpec resolved() const;

  /// Every tensor of the architecture, in a fixed order (layer order, then PyTorch's order).
  std::vector<TensorInfo> tensors() const;
  /// Number of trainable parameters (weights and biases, not running statistics).
  int64_t parameter_count() const;
};

std::string shape_to_string(const std::vector<int64_t>& shape);

}  // namespace mcompress
