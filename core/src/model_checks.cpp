#include "model_checks.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "mcompress/core/error.h"
#include "tensor_codec.h"

namespace mcompress::model_file {
namespace {

// Values of the root attribute quant_mode; "" is a plain fp32 model.
const std::vector<std::string> kQuantModes = {
    "", "fp16", "bf16", "int8-dynamic", "int8-static", "codebook"};

// A codebook tensor's bits, shared values and codes (docs/format.md §4.8).
template <typename ErrorT>
void check_codebook(const std::string& path, const std::string& name, const QuantizedTensor& q) {
  MCOMPRESS_CHECK(q.bits >= 1 && q.bits <= 8, ErrorT, path, ": tensor '", name,
                  "' (codebook) has bits ", q.bits, ", expected 1 to 8");
  const int64_t capacity = int64_t{1} << q.bits;
  MCOMPRESS_CHECK(
      q.codebook.defined() && q.codebook.dim() == 1 && q.codebook.scalar_type() == at::kFloat,
      ErrorT, path, ": tensor '", name, "' (codebook) needs a one-dimensional float32 codebook");
  MCOMPRESS_CHECK(q.codebook.numel() >= 1 && q.codebook.numel() <= capacity, ErrorT, path,
                  ": tensor '", name, "' (codebook) has ", q.codebook.numel(),
                  " shared values, expected 1 to ", capacity, " (2^bits, bits ", q.bits, ")");
  const at::Tensor book = q.codebook.to(at::kCPU).contiguous();
  float bad = 0.0f;
  const int64_t index = first_non_finite(book, &bad);
  MCOMPRESS_CHECK(index < 0, ErrorT, path, ": tensor '", name, "' (codebook) has shared value ",
                  bad, " at index ", index, ", expected finite values");
  if (q.values.numel() == 0) return;
  const int64_t largest = q.values.max().item<int64_t>();
  MCOMPRESS_CHECK(largest < q.codebook.numel(), ErrorT, path, ": tensor '", name,
                  "' (codebook) has code ", largest, " but only ", q.codebook.numel(),
                  " shared values");
}

}  // namespace

// The checks shared by saving (ErrorT = ModelError: the model is inconsistent) and loading
// (ErrorT = FormatError: the file is). `values` etc. are CPU tensors of any dtype here.
template <typename ErrorT>
void check_int8_params(const std::string& path, const std::string& name, const QuantizedTensor& q,
                       const std::vector<int64_t>& shape) {
  const int64_t rank = static_cast<int64_t>(shape.size());
  MCOMPRESS_CHECK(q.axis == -1 || (q.axis >= 0 && q.axis < rank), ErrorT, path, ": tensor '", name,
                  "' (int8) has axis ", q.axis, ", expected -1 (one scale for the tensor)",
                  rank > 0 ? " or 0 to " + std::to_string(rank - 1) : std::string());
  const int64_t channels = q.axis < 0 ? 1 : shape[static_cast<size_t>(q.axis)];
  MCOMPRESS_CHECK(q.scale.defined() && q.scale.dim() == 1 && q.scale.scalar_type() == at::kFloat,
                  ErrorT, path, ": tensor '", name,
                  "' (int8) needs a one-dimensional float32 scale");
  MCOMPRESS_CHECK(q.scale.numel() == channels, ErrorT, path, ": tensor '", name, "' (int8) has ",
                  q.scale.numel(), " scales, expected ", channels,
                  q.axis < 0 ? std::string(" (axis -1: one scale for the tensor)")
                             : " (one per channel along axis " + std::to_string(q.axis) + ")");
  MCOMPRESS_CHECK(
      q.zero_point.defined() && q.zero_point.dim() == 1 && q.zero_point.scalar_type() == at::kInt,
      ErrorT, path, ": tensor '", name, "' (int8) needs a one-dimensional int32 zero_point");
  MCOMPRESS_CHECK(q.zero_point.numel() == q.scale.numel(), ErrorT, path, ": tensor '", name,
                  "' (int8) has ", q.zero_point.numel(), " zero points but ", q.scale.numel(),
                  " scales; expected one zero point per scale");
  const at::Tensor scale = q.scale.to(at::kCPU).contiguous();
  const float* s = scale.data_ptr<float>();
  for (int64_t i = 0; i < scale.numel(); ++i) {
    MCOMPRESS_CHECK(std::isfinite(s[i]) && s[i] > 0.0f, ErrorT, path, ": tensor '", name,
                    "' (int8) has scale ", s[i], " at index ", i, ", expected a finite value > 0");
  }
  const at::Tensor zero_point = q.zero_point.to(at::kCPU).contiguous();
  const int32_t* z = zero_point.data_ptr<int32_t>();
  for (int64_t i = 0; i < zero_point.numel(); ++i) {
    MCOMPRESS_CHECK(z[i] >= -128 && z[i] <= 127, ErrorT, path, ": tensor '", name,
                    "' (int8) has zero_point ", z[i], " at index ", i,
                    ", expected -128 to 127 (int8)");
  }
}

template <typename ErrorT>
void check_quantized(const std::string& path, const std::string& name, const QuantizedTensor& q,
                     const std::vector<int64_t>& shape) {
  const std::string enc = to_string(q.encoding);
  MCOMPRESS_CHECK(q.encoding != Encoding::kFp32, ErrorT, path, ": tensor '", name,
                  "' is listed as quantized with encoding fp32; list only fp16, bf16, int8 or "
                  "codebook tensors (fp32 is the default)");
  MCOMPRESS_CHECK(q.values.defined(), ErrorT, path, ": tensor '", name, "' (", enc,
                  ") has no values");
  MCOMPRESS_CHECK(q.values.scalar_type() == value_dtype(q.encoding), ErrorT, path, ": tensor '",
                  name, "' (", enc, ") has values of dtype ", q.values.scalar_type(), ", expected ",
                  packed::dtype_name(stored_dtype(q.encoding)));
  MCOMPRESS_CHECK(q.values.sizes().vec() == shape, ErrorT, path, ": tensor '", name, "' (", enc,
                  ") has values of shape ", shape_to_string(q.values.sizes().vec()), ", expected ",
                  shape_to_string(shape), " from the architecture");
  if (q.encoding == Encoding::kCodebook) {
    check_codebook<ErrorT>(path, name, q);
    return;
  }
  if (q.encoding == Encoding::kInt8) check_int8_params<ErrorT>(path, name, q, shape);
}

template <typename ErrorT>
void check_quant_mode(const std::string& path, const std::string& mode) {
  MCOMPRESS_CHECK(std::find(kQuantModes.begin(), kQuantModes.end(), mode) != kQuantModes.end(),
                  ErrorT, path, ": unknown quant_mode '", mode,
                  "'; accepted: \"\" (none), fp16, bf16, int8-dynamic, int8-static");
}

template <typename ErrorT>
void check_activation(const std::string& path, const std::string& key,
                      const ActivationQParams& params) {
  MCOMPRESS_CHECK(!key.empty() && key.find('/') == std::string::npos && key != ".", ErrorT, path,
                  ": activation key '", key, "' cannot be an HDF5 group name");
  MCOMPRESS_CHECK(std::isfinite(params.scale) && params.scale > 0.0, ErrorT, path, ": activation '",
                  key, "' has scale ", params.scale, ", expected a finite value > 0");
  MCOMPRESS_CHECK(params.zero_point >= 0 && params.zero_point <= 255, ErrorT, path,
                  ": activation '", key, "' has zero_point ", params.zero_point,
                  ", expected 0 to 255 (uint8)");
}

template void check_quantized<ModelError>(const std::string&, const std::string&,
                                          const QuantizedTensor&, const std::vector<int64_t>&);
template void check_quantized<FormatError>(const std::string&, const std::string&,
                                           const QuantizedTensor&, const std::vector<int64_t>&);
template void check_int8_params<ModelError>(const std::string&, const std::string&,
                                            const QuantizedTensor&, const std::vector<int64_t>&);
template void check_int8_params<FormatError>(const std::string&, const std::string&,
                                             const QuantizedTensor&, const std::vector<int64_t>&);
template void check_quant_mode<ModelError>(const std::string&, const std::string&);
template void check_quant_mode<FormatError>(const std::string&, const std::string&);
template void check_activation<ModelError>(const std::string&, const std::string&,
                                           const ActivationQParams&);
template void check_activation<FormatError>(const std::string&, const std::string&,
                                            const ActivationQParams&);

void check_tensor_name(const std::string& path, const std::string& name) {
  MCOMPRESS_CHECK(!name.empty() && name.find('/') == std::string::npos && name != ".", ModelError,
                  path, ": tensor name '", name, "' cannot be an HDF5 group name");
}

// Everything in model.quant that would make the file unloadable, checked before the temporary
// file is created.
void check_quant_state(const Model& model, const std::string& path) {
  check_quant_mode<ModelError>(path, model.quant.mode);
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const TensorInfo& info : model.tensor_infos()) shapes.emplace(info.name, info.shape);
  for (const auto& [name, quantized] : model.quant.tensors) {
    auto it = shapes.find(name);
    MCOMPRESS_CHECK(it != shapes.end(), ModelError, path, ": quantized tensor '", name,
                    "' is not a tensor of the architecture");
    check_quantized<ModelError>(path, name, quantized, it->second);
  }
  for (const auto& [key, params] : model.quant.activations)
    check_activation<ModelError>(path, key, params);
}

// The file stores a mask as its tensor's non-zero pattern (docs/format.md §4.7), so a mask
// that leaves a non-zero value where it says "pruned" would come back different: refuse it.
void check_masks(const Model& model, const std::string& path) {
  for (const auto& [name, mask] : model.masks) {
    MCOMPRESS_CHECK(model.has_tensor(name), ModelError, path, ": pruning mask '", name,
                    "' is not a tensor of the architecture");
    const at::Tensor& master = model.tensor(name);
    MCOMPRESS_CHECK(mask.defined() && mask.sizes() == master.sizes(), ModelError, path,
                    ": pruning mask of tensor '", name, "' has shape ",
                    mask.defined() ? shape_to_string(mask.sizes().vec()) : std::string("(none)"),
                    ", expected ", shape_to_string(master.sizes().vec()));
    auto quantized = model.quant.tensors.find(name);
    const at::Tensor stored = quantized != model.quant.tensors.end()
                                  ? quantized->second.dequantize()
                                  : master.to(at::kCPU);
    const at::Tensor leaked =
        stored.ne(0).logical_and(mask.to(at::kCPU).to(at::kBool).logical_not());
    const int64_t count = leaked.sum().item<int64_t>();
    MCOMPRESS_CHECK(count == 0, ModelError, path, ": tensor '", name, "' has ", count,
                    " non-zero values where its pruning mask is false (first at flat index ",
                    count > 0 ? leaked.reshape({-1}).nonzero()[0].item<int64_t>() : -1,
                    "); the file stores a mask as the tensor's zero pattern, so apply the mask "
                    "(Model::set_mask) before saving");
  }
}

}  // namespace mcompress::model_file
