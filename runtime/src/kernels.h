#pragma once
// Private: the kernels an Executor plan is made of. Each kernel owns its (pre-processed)
// weights and is immutable after construction, so a plan can run from several threads.

#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mcompress/core/model.h"

namespace mcompress::runtime {

/// What a kernel consumes: float tensors, quantized (quint8) tensors, or either (pools,
/// flatten and relu run on both and keep the input's domain and qparams).
enum class Domain { kFloat, kQuant, kAny };

/// Receives named activations during calibration runs ("2", "5.conv1", ...).
using ActivationSink = std::function<void(const std::string& key, const at::Tensor& value)>;

class Kernel {
 public:
  virtual ~Kernel() = default;
  virtual at::Tensor run(const at::Tensor& x) const = 0;
  virtual Domain domain() const { return Domain::kFloat; }
  /// Like run(), also reporting activations produced inside the kernel (residual blocks).
  virtual at::Tensor run_observed(const at::Tensor& x, const ActivationSink& sink) const {
    (void)sink;
    return run(x);
  }
};
using KernelPtr = std::unique_ptr<Kernel>;

/// A convolution or linear layer's weights after folding an inference-mode batchnorm into
/// them: W' = W·γ/√(σ²+ε) per output channel, b' = (b − μ)·γ/√(σ²+ε) + β.
struct AffineWeights {
  at::Tensor weight;  // [out, ...]
  at::Tensor bias;    // [out]
};

struct BatchNormStats {
  at::Tensor gamma, beta, mean, var;
  double eps = 1e-5;
};

AffineWeights fold_batchnorm(const AffineWeights& layer, const BatchNormStats& bn);

struct Conv2dGeometry {
  int64_t stride = 1, padding = 0, groups = 1;
};

KernelPtr make_normalize_fp32(at::Tensor mean, at::Tensor std);
KernelPtr make_linear_fp32(AffineWeights w, bool relu);
/// y = x·Wᵀ + b [, relu] with W held as an Eigen CSR matrix of its non-zeros; x: [N, in].
KernelPtr make_linear_sparse_fp32(const AffineWeights& w, bool relu);
KernelPtr make_conv2d_fp32(AffineWeights w, Conv2dGeometry geometry, bool relu);
/// A batchnorm that follows no conv/linear: y = x·scale + shift per channel (dim 1).
KernelPtr make_channel_affine_fp32(const BatchNormStats& bn, bool relu);
KernelPtr make_relu();  // the pools, relu and flatten below run in either domain
KernelPtr make_max_pool2d(int64_t kernel, int64_t stride, int64_t padding);
KernelPtr make_avg_pool2d(int64_t kernel, int64_t stride, int64_t padding);
KernelPtr make_adaptive_avg_pool2d(int64_t output_size);
KernelPtr make_flatten();
/// relu(main2(main1(x)) + shortcut(x)); a null shortcut is the identity. run_observed reports
/// "<key>.conv1", "<key>.conv2", "<key>.shortcut" (with a projection).
KernelPtr make_residual(KernelPtr main1, KernelPtr main2, KernelPtr shortcut, std::string key);

// ---- int8 kernels (LibTorch quantized ops on the oneDNN engine) ----

/// Selects the oneDNN quantized engine once per process.
void ensure_quantized_engine();

/// Per-channel (axis 0) or per-tensor symmetric qint8 weight for the quantized ops. When
/// `stored` holds int8 codes of exactly this weight (no batchnorm folded) they are used as is.
at::Tensor quantize_weight_for_kernel(const at::Tensor& weight, const QuantizedTensor* stored,
                                      bool per_channel);

/// float → float: activations quantized per batch at run time (quantized::linear_dynamic).
KernelPtr make_linear_dynamic_int8(const at::Tensor& qweight, const at::Tensor& bias, bool relu);
/// quint8 → quint8 with the output's qparams (quantized::linear / linear_relu).
KernelPtr make_linear_static_int8(const at::Tensor& qweight, const at::Tensor& bias, bool relu,
                                  ActivationQParams out);
/// quint8 → quint8 (quantized::conv2d / conv2d_relu).
KernelPtr make_conv2d_static_int8(const at::Tensor& qweight, const at::Tensor& bias,
                                  Conv2dGeometry geometry, bool relu, ActivationQParams out);
/// quint8 → quint8: quantized::add_relu(main2(main1(x)), shortcut(x)) with the block's qparams.
KernelPtr make_residual_int8(KernelPtr main1, KernelPtr main2, KernelPtr shortcut,
                             ActivationQParams out);
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
