#include "onnx_weights.h"

#include <ATen/ATen.h>

#include <vector>

#include "mcompress/core/error.h"

namespace mcompress::interop {

Affine fold_batchnorm(const Affine& layer, const BatchNorm& bn) {
  const auto scale = bn.gamma / (bn.var + bn.eps).sqrt();
  std::vector<int64_t> shape(static_cast<size_t>(layer.weight.dim()), 1);
  shape[0] = scale.numel();
  return {(layer.weight * scale.reshape(shape)).contiguous(),
          ((layer.bias - bn.mean) * scale + bn.beta).contiguous()};
}

Int8Weight kernel_weight(const std::string& name, const at::Tensor& weight,
                         const QuantizedTensor* stored, bool per_channel) {
  Int8Weight w;
  if (stored != nullptr && stored->values.sizes() == weight.sizes()) {
    MCOMPRESS_CHECK(stored->values.scalar_type() == at::kChar, ModelError, "ONNX export: tensor '",
                    name, "' is int8-encoded but its codes are not int8");
    const auto zp = stored->zero_point.to(at::kLong);
    MCOMPRESS_CHECK(
        zp.numel() == 0 || (zp.min().item<int64_t>() >= -128 && zp.max().item<int64_t>() <= 127),
        ModelError, "ONNX export: tensor '", name, "' has a zero point outside int8");
    w.codes = stored->values;
    w.per_channel = stored->axis == 0;
    MCOMPRESS_CHECK(w.per_channel || stored->axis < 0, ModelError, "ONNX export: tensor '", name,
                    "' is quantized along axis ", stored->axis, "; only axis 0 or per-tensor");
    w.scale = stored->scale.to(at::kFloat);
    w.zero_point = zp.to(at::kChar);
    MCOMPRESS_CHECK(w.scale.numel() == (w.per_channel ? weight.size(0) : 1) &&
                        w.zero_point.numel() == w.scale.numel(),
                    ModelError, "ONNX export: tensor '", name, "' has ", w.scale.numel(),
                    " scales for ", weight.size(0), " channels");
    if (!w.per_channel) {
      w.scale = w.scale.reshape({});
      w.zero_point = w.zero_point.reshape({});
    }
    return w;
  }
  const auto flat = weight.reshape({weight.size(0), -1});
  w.per_channel = per_channel;
  if (per_channel) {
    auto scale = flat.abs().amax(1).to(at::kDouble) / 127.0;
    scale = at::where(scale > 0, scale, at::ones_like(scale));
    w.codes = at::quantize_per_channel(weight, scale, at::zeros({weight.size(0)}, at::kLong), 0,
                                       at::kQInt8)
                  .int_repr();
    w.scale = scale.to(at::kFloat);
    w.zero_point = at::zeros({weight.size(0)}, at::kChar);
  } else {
    double scale = flat.abs().max().item<double>() / 127.0;
    if (!(scale > 0)) scale = 1.0;
    w.codes = at::quantize_per_tensor(weight, scale, 0, at::kQInt8).int_repr();
    w.scale = at::scalar_tensor(scale, at::kFloat);
    w.zero_point = at::zeros({}, at::kChar);
  }
  return w;
}

}  // namespace mcompress::interop
