#pragma once
// Private: the kernels an Executor plan is made of beside GraphNetwork's inference kernels. Each
// kernel owns its (pre-processed) weights and is immutable after construction, so a plan can run
// from several threads.

#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mcompress/core/kernel_weights.h"
#include "mcompress/core/model.h"

namespace mcompress::runtime {

/// Receives named activations during calibration runs ("input", "2", "5.relu1", ...).
using ActivationSink = std::function<void(const std::string& key, const at::Tensor& value)>;

class Kernel {
 public:
  virtual ~Kernel() = default;
  virtual at::Tensor run(const at::Tensor& x) const = 0;
};
using KernelPtr = std::unique_ptr<Kernel>;

/// A convolution or linear layer's weight [out, ...] and bias [out], batchnorm folded where the
/// step has one (core's folded_weights).
using AffineWeights = FoldedWeights;

struct Conv2dGeometry {
  int64_t stride = 1, padding = 0, groups = 1;
};

/// y = x·Wᵀ + b [, relu] on at::addmm; x: [N, in].
KernelPtr make_linear_fp32(AffineWeights w, bool relu);
/// y = x·Wᵀ + b [, relu] with W held as an Eigen CSR matrix of its non-zeros; x: [N, in].
KernelPtr make_linear_sparse_fp32(const AffineWeights& w, bool relu);

// ---- int8 kernels (LibTorch quantized ops on the oneDNN engine) ----

/// Selects the oneDNN quantized engine once per process.
void ensure_quantized_engine();

/// float → float: activations quantized per batch at run time (quantized::linear_dynamic).
KernelPtr make_linear_dynamic_int8(const at::Tensor& qweight, const at::Tensor& bias, bool relu);
/// quint8 → quint8 with the output's qparams (quantized::linear / linear_relu).
KernelPtr make_linear_static_int8(const at::Tensor& qweight, const at::Tensor& bias, bool relu,
                                  ActivationQParams out);
/// quint8 → quint8 (quantized::conv2d / conv2d_relu).
KernelPtr make_conv2d_static_int8(const at::Tensor& qweight, const at::Tensor& bias,
                                  Conv2dGeometry geometry, bool relu, ActivationQParams out);
/// A kernel of several inputs, as graph plans run them.
using MultiInputKernel = std::function<at::Tensor(const std::vector<at::Tensor>&)>;
/// quint8 + quint8 → quint8 with the output's qparams (quantized::add / add_relu, ONNX
/// QLinearAdd): the inputs' differing scales are requantized inside the op.
MultiInputKernel make_add_int8(bool relu, ActivationQParams out);
/// quint8... → quint8 concatenated along `axis` with the output's qparams (quantized::cat,
/// ONNX QLinearConcat).
MultiInputKernel make_concat_int8(int64_t axis, ActivationQParams out);
KernelPtr make_quantize(ActivationQParams qparams);
KernelPtr make_dequantize();

}  // namespace mcompress::runtime
