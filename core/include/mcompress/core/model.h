#pragma once
// A Model is data: an architecture, its fp32 master tensors and what compression stages
// decided about them. Stages edit this data; the runtime reads it to choose kernels.
// Every model has a Graph (core/graph.h). A sequential model (a layer chain: the sequential zoo,
// spec JSON, v1-v3 files) also has its ArchSpec, from which the graph is derived; a graph model
// (resnet18, mobilenetv2, a graph document, a v4 file) has only the graph.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mcompress/core/arch_spec.h"
#include "mcompress/core/graph.h"

namespace mcompress {

/// How a tensor is stored in the model file and, for int8, deployed. The names are the file's
/// `encoding` attribute values.
enum class Encoding { kFp32, kFp16, kBf16, kInt8, kCodebook };
std::string to_string(Encoding encoding);
Encoding parse_encoding(const std::string& name);  // FormatError listing the accepted names

/// A tensor in a reduced-precision encoding, decided by a quantization stage.
/// int8: w ≈ (q − zero_point[c]) · scale[c] along `axis` (-1: one scale for the tensor);
///       symmetric weights have zero_point 0 and q in [−127, 127].
/// fp16/bf16: `values` holds the half-precision tensor; scale/zero_point are undefined.
/// codebook: w = codebook[values] (weight sharing): `values` holds uint8 codes < 2^bits, each
///       an index into the float32 `codebook` of at most 2^bits shared values.
struct QuantizedTensor {
  Encoding encoding = Encoding::kFp32;
  at::Tensor values;      // int8 (kChar) codes, kHalf / kBFloat16 values, or uint8 (kByte) codes
  at::Tensor scale;       // float32 [channels] or [1]   (int8 only)
  at::Tensor zero_point;  // int32, same size as scale    (int8 only)
  int64_t axis = 0;       // channel axis of scale, or -1 for per-tensor
  at::Tensor codebook;    // float32 [K], K <= 2^bits     (codebook only)
  int64_t bits = 0;       // bits per code, 1 to 8         (codebook only)

  /// The fp32 tensor this encoding represents.
  at::Tensor dequantize() const;
};

/// Affine uint8 quantization parameters of one activation: x ≈ (q − zero_point) · scale.
struct ActivationQParams {
  double scale = 1.0;
  int64_t zero_point = 0;
  std::string observer;  // which observer chose them (provenance)
};

/// What quantization decided. Empty when the model is plain fp32.
struct QuantState {
  /// "" (none), "fp16", "bf16", "int8-dynamic", "int8-static", "codebook"; the runtime picks
  /// kernels by it (fp16, bf16 and codebook are storage formats: it computes in fp32).
  std::string mode;
  /// Tensors stored in a reduced encoding, by tensor name. Tensors not listed are fp32.
  std::map<std::string, QuantizedTensor> tensors;
  /// int8-static: qparams of activations, by key: "input" (the normalised network input)
  /// or the index of the spec layer that produces the activation ("2", "5.conv1", ...).
  std::map<std::string, ActivationQParams> activations;

  bool empty() const { return mode.empty() && tensors.empty() && activations.empty(); }
  /// The int8 encoding of tensor `name`, or nullptr when it is not stored as int8.
  const QuantizedTensor* find_int8(const std::string& name) const;
  /// The qparams of activation `key`, or nullptr when none were recorded.
  const ActivationQParams* find_activation(const std::string& key) const;
};

/// A graph's parameter tensors as TensorInfos, in the graph's order (layer: the owning node's
/// index). ModelError if the graph is invalid.
std::vector<TensorInfo> graph_tensor_infos(const Graph& graph);

class Model {
 public:
  /// A model whose tensors are initialised as PyTorch initialises the same layers, from `seed`.
  static Model initialize(const ArchSpec& spec, uint64_t seed);
  static Model initialize(const Graph& graph, uint64_t seed);
  /// A model with the given tensors; ModelError if any tensor is missing, extra, not float32
  /// or of the wrong shape (the message names the tensor), or if the graph is invalid.
  static Model from_tensors(const ArchSpec& spec, std::map<std::string, at::Tensor> tensors);
  static Model from_tensors(const Graph& graph, std::map<std::string, at::Tensor> tensors);

  /// Whether the model is a layer chain with an ArchSpec (see the top of this file).
  bool is_sequential() const noexcept { return spec_.has_value(); }
  /// The layer chain. ModelError naming the model for a graph model: the code that has not
  /// moved to graphs yet (structured pruning, distillation, ...) refuses graph models here.
  const ArchSpec& spec() const;
  /// The model's graph (Graph::from_sequential(spec()) for a sequential model).
  const Graph& graph() const noexcept { return *graph_; }
  /// The architecture's name ("mlp", "resnet18"); may be empty for a user's architecture.
  const std::string& name() const noexcept { return graph_->name; }
  /// The first input's shape without the batch dimension ({1, 28, 28}). ModelError naming the
  /// input when a dimension other than the batch is symbolic.
  std::vector<int64_t> input_shape() const;
  /// The task's number of classes.
  int64_t num_classes() const noexcept { return graph_->task.num_classes; }
  /// The architecture as text: the spec JSON of a sequential model, the graph document of a
  /// graph model (what the model file's `arch` attribute holds).
  std::string architecture_json() const;
  /// Weights and biases, counted as ArchSpec::parameter_count counts them (no batchnorm
  /// statistics).
  int64_t parameter_count() const { return mcompress::parameter_count(infos_); }
  /// fp32 master tensors in architecture order (spec().tensors() or the graph's parameters).
  const std::vector<TensorInfo>& tensor_infos() const noexcept { return infos_; }
  const at::Tensor& tensor(const std::string& name) const;  // ModelError for an unknown name
  at::Tensor& tensor(const std::string& name);
  bool has_tensor(const std::string& name) const { return tensors_.count(name) != 0; }
  const std::map<std::string, at::Tensor>& tensors() const noexcept { return tensors_; }

  /// Reduced-precision encodings decided by quantization. The fp32 tensors above always hold
  /// the values the model computes with (for int8/fp16 tensors: the dequantized values).
  QuantState quant;

  /// Pruning masks by tensor name (bool, the tensor's shape; true = kept). The tensor holds
  /// zeros where its mask is false, and every later training run (fine-tuning, QAT,
  /// distillation) keeps them exactly zero. Set by the pruning stage; empty when unpruned.
  std::map<std::string, at::Tensor> masks;
  /// Sets masks[name] = mask and zeroes the masked-out entries of the tensor. ModelError for an
  /// unknown tensor or a mask of another shape.
  void set_mask(const std::string& name, const at::Tensor& mask);

  /// One JSON document per stage applied (train, quantize, ...), oldest first.
  std::vector<std::string> history;
  /// The recipe or command line that produced the model, and its seed (provenance).
  std::string recipe;
  uint64_t seed = 0;

  /// A deep copy (tensors cloned), e.g. a teacher snapshot or a rollback point.
  Model clone() const;

 private:
  Model(std::optional<ArchSpec> spec, std::shared_ptr<const Graph> graph,
        std::vector<TensorInfo> infos, std::map<std::string, at::Tensor> tensors);
  std::optional<ArchSpec> spec_;
  std::shared_ptr<const Graph> graph_;  // immutable, so copies of a model share it
  std::vector<TensorInfo> infos_;
  std::map<std::string, at::Tensor> tensors_;
};

}  // namespace mcompress
