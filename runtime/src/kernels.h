#pragma once
// Private: the kernels an Executor plan is made of. Each kernel owns its (pre-processed)
// weights and is immutable after construction, so a plan can run from several threads.

#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

namespace mcompress::runtime {

class Kernel {
 public:
  virtual ~Kernel() = default;
  virtual at::Tensor run(const at::Tensor& x) const = 0;
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
KernelPtr make_conv2d_fp32(AffineWeights w, Conv2dGeometry geometry, bool relu);
/// A batchnorm that follows no conv/linear: y = x·scale + shift per channel (dim 1).
KernelPtr make_channel_affine_fp32(const BatchNormStats& bn, bool relu);
KernelPtr make_relu();
KernelPtr make_max_pool2d(int64_t kernel, int64_t stride, int64_t padding);
KernelPtr make_avg_pool2d(int64_t kernel, int64_t stride, int64_t padding);
KernelPtr make_adaptive_avg_pool2d(int64_t output_size);
KernelPtr make_flatten();
/// relu(main2(main1(x)) + shortcut(x)); a null shortcut is the identity.
KernelPtr make_residual(KernelPtr main1, KernelPtr main2, KernelPtr shortcut);

}  // namespace mcompress::runtime
