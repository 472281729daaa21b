#pragma once
// Private: weights as the runtime's kernels see them, for the ONNX exporter: batchnorm folded
// the way runtime/src/fp32_kernels.cpp folds it, int8 codes the way int8_kernels.cpp packs them,
// so that the exported graph computes with exactly the runtime's numbers.

#include <ATen/core/Tensor.h>

#include <string>

#include "mcompress/core/model.h"

namespace mcompress::interop {

/// A weight (with its bias) as a conv/linear kernel sees it, batchnorm folded or not.
struct Affine {
  at::Tensor weight, bias;
};

/// A batchnorm's tensors: γ, β and the running statistics.
struct BatchNorm {
  at::Tensor gamma, beta, mean, var;
  double eps = 1e-5;
};

/// = runtime fold_batchnorm: W' = W·γ/√(σ²+ε) per output channel, b' = (b − μ)·γ/√(σ²+ε) + β.
Affine fold_batchnorm(const Affine& layer, const BatchNorm& bn);

/// int8 codes of a weight as the runtime's int8 kernels use them (quantize_weight_for_kernel).
struct Int8Weight {
  at::Tensor codes;       // int8, the weight's shape
  at::Tensor scale;       // float32 [out] (per channel) or 0-dim
  at::Tensor zero_point;  // int8, the scale's shape
  bool per_channel = true;
};

/// The stored codes when `stored` holds exactly this weight, else symmetric codes of the
/// (batchnorm-folded) values, per channel (axis 0) or per tensor. ModelError naming `name`
/// for stored codes that are not int8, a zero point outside int8 or an axis other than 0.
Int8Weight kernel_weight(const std::string& name, const at::Tensor& weight,
                         const QuantizedTensor* stored, bool per_channel);

}  // namespace mcompress::interop
