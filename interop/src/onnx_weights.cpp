#include "onnx_weights.h"

#include <ATen/ATen.h>

namespace mcompress::interop {

Int8Weight onnx_int8_weight(const at::Tensor& qweight) {
  Int8Weight w;
  w.codes = qweight.int_repr();
  w.per_channel = qweight.qscheme() == at::kPerChannelAffine;
  if (w.per_channel) {
    w.scale = qweight.q_per_channel_scales().to(at::kFloat);
    w.zero_point = qweight.q_per_channel_zero_points().to(at::kChar);
  } else {
    w.scale = at::scalar_tensor(qweight.q_scale(), at::kFloat);
    w.zero_point = at::scalar_tensor(qweight.q_zero_point(), at::kChar);
  }
  return w;
}

}  // namespace mcompress::interop
