#pragma once
// Private: an int8 kernel weight (core's int8_kernel_weight, the qint8 tensor the runtime
// packs) as the three tensors an ONNX DequantizeLinear/QLinearConv reads.

#include <ATen/core/Tensor.h>

namespace mcompress::interop {

struct Int8Weight {
  at::Tensor codes;       // int8, the weight's shape
  at::Tensor scale;       // float32 [out] (per channel) or 0-dim
  at::Tensor zero_point;  // int8, the scale's shape
  bool per_channel = true;
};

/// The codes, scales and zero points of a per-channel (axis 0) or per-tensor qint8 tensor.
Int8Weight onnx_int8_weight(const at::Tensor& qweight);

}  // namespace mcompress::interop
