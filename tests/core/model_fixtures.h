#pragma once
// Models for the model-file suites (groups_container_*_test.cpp: the groups container, format v2;
// packed_model_file_test.cpp: the packed container, v3): every encoding and layout, with the
// values a sloppy writer would change.

#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "mcompress/core/model.h"

namespace mcompress {

inline constexpr const char* kTinySpec = R"({"name":"tiny","input_shape":[1,4,4],"num_classes":3,
  "mean":[0.5],"std":[0.25],"layers":[
    {"type":"conv2d","out_channels":2,"kernel_size":3,"padding":1},
    {"type":"batchnorm2d"},{"type":"relu"},{"type":"flatten"},
    {"type":"linear","out_features":3}]})";

inline Model tiny_model(uint64_t seed = 7) {
  Model model = Model::initialize(ArchSpec::from_json_text(kTinySpec), seed);
  model.history = {R"({"stage":"train","metrics":{"accuracy":0.5}})",
                   R"({"stage":"prune.magnitude"})"};
  model.recipe = "model: tiny\nstages: []\n";
  // Values a lossy or sloppy writer would change: signed zero, a subnormal, exact zeros.
  float* w = model.tensor("4.weight").data_ptr<float>();  // [3, 32], contiguous
  w[0] = -0.0f;
  w[1] = std::numeric_limits<float>::denorm_min();
  w[32] = 0.0f;
  return model;
}

inline bool bit_identical(const at::Tensor& a, const at::Tensor& b) {
  return a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type() &&
         std::memcmp(a.contiguous().data_ptr(), b.contiguous().data_ptr(), a.nbytes()) == 0;
}

inline constexpr const char* kMlpSpec = R"({"name":"mlp","input_shape":[784],"num_classes":10,
  "layers":[{"type":"linear","out_features":300},{"type":"relu"},
    {"type":"linear","out_features":64},{"type":"relu"},{"type":"linear","out_features":10}]})";

// Random-normal first-layer weights: deflate cannot shrink their float32 bits much, so stored
// sizes compare the encodings rather than the compressor.
inline Model mlp_model(uint64_t seed = 11) {
  Model model = Model::initialize(ArchSpec::from_json_text(kMlpSpec), seed);
  at::manual_seed(seed);
  model.tensor("0.weight").copy_(at::randn({300, 784}) * 0.05);
  return model;
}

// Symmetric int8 per output channel, the weight rule of docs/format.md.
inline QuantizedTensor int8_per_channel(const at::Tensor& w) {
  at::Tensor scale = w.reshape({w.size(0), -1}).abs().amax(1) / 127.0;
  scale = at::where(scale > 0, scale, at::ones_like(scale));
  std::vector<int64_t> view(static_cast<size_t>(w.dim()), 1);
  view[0] = w.size(0);
  QuantizedTensor q;
  q.encoding = Encoding::kInt8;
  q.values = (w / scale.reshape(view)).round().clamp(-127, 127).to(at::kChar);
  q.scale = scale.contiguous();
  q.zero_point = at::zeros({w.size(0)}, at::kInt);
  q.axis = 0;
  return q;
}

// Affine int8 with one scale for the tensor and a non-zero zero point.
inline QuantizedTensor int8_per_tensor(const at::Tensor& w, int32_t zero_point) {
  const float scale = w.abs().max().item<float>() / 100.0f;
  QuantizedTensor q;
  q.encoding = Encoding::kInt8;
  q.values = (w / scale).round().add(zero_point).clamp(-128, 127).to(at::kChar);
  q.scale = at::full({1}, scale, at::kFloat);
  q.zero_point = at::full({1}, zero_point, at::kInt);
  q.axis = -1;
  return q;
}

inline QuantizedTensor half_precision(const at::Tensor& w, Encoding encoding) {
  QuantizedTensor q;
  q.encoding = encoding;
  q.values = w.to(encoding == Encoding::kFp16 ? at::kHalf : at::kBFloat16).contiguous();
  return q;
}

// Every encoding in one model, with the fp32 masters holding the dequantized values as
// Model::quant's contract says.
inline Model quantized_model() {
  Model model = mlp_model();
  QuantState& quant = model.quant;
  quant.mode = "int8-static";
  quant.tensors["0.weight"] = int8_per_channel(model.tensor("0.weight"));
  quant.tensors["2.weight"] = int8_per_tensor(model.tensor("2.weight"), 3);
  quant.tensors["2.bias"] = half_precision(model.tensor("2.bias"), Encoding::kBf16);
  quant.tensors["4.weight"] = half_precision(model.tensor("4.weight"), Encoding::kFp16);
  // Values a sloppy writer would change: signed zero and the smallest fp16 subnormal.
  at::Half* h = quant.tensors["4.weight"].values.data_ptr<at::Half>();
  h[0] = at::Half(-0.0f);
  h[1] = at::Half(1, at::Half::from_bits());
  for (const auto& [name, q] : quant.tensors) model.tensor(name) = q.dequantize().contiguous();
  // The file does not check keys against the architecture; "5.conv1" checks a dotted name.
  quant.activations["input"] = {0.0157, 128, "minmax"};
  quant.activations["1"] = {0.031, 0, "histogram"};
  quant.activations["5.conv1"] = {0.02, 7, "minmax"};
  return model;
}

// Zeroes the smallest-magnitude fraction `sparsity` of each row (as a layer-wise magnitude
// pruning stage would) and records the mask.
inline void prune_rows(Model& model, const std::string& name, double sparsity) {
  const at::Tensor& w = model.tensor(name);
  const at::Tensor rows = w.reshape({w.size(0), -1}).abs();
  const int64_t drop = static_cast<int64_t>(sparsity * static_cast<double>(rows.size(1)));
  const at::Tensor threshold = std::get<0>(rows.kthvalue(drop, 1, true));
  model.set_mask(name, rows.gt(threshold).reshape(w.sizes()));
}

// The mlp with its first weight 95% zeros (pruned), in the given encoding; masters hold the
// dequantized values as Model::quant's contract says.
inline Model sparse_mlp(const std::string& encoding) {
  Model model = mlp_model();
  prune_rows(model, "0.weight", 0.95);
  const at::Tensor& w = model.tensor("0.weight");
  if (encoding == "fp16" || encoding == "bf16") {
    const Encoding e = encoding == "fp16" ? Encoding::kFp16 : Encoding::kBf16;
    model.quant.mode = encoding;
    model.quant.tensors["0.weight"] = half_precision(w, e);
  } else if (encoding == "int8") {
    model.quant.mode = "int8-dynamic";
    model.quant.tensors["0.weight"] = int8_per_channel(w);
  } else if (encoding == "int8-affine") {  // per tensor, zero point 3: omitted codes are 3
    model.quant.mode = "int8-static";
    model.quant.tensors["0.weight"] = int8_per_tensor(w, 3);
  }
  for (const auto& [name, q] : model.quant.tensors)
    model.tensor(name) = q.dequantize().contiguous();
  return model;
}

// The mlp with 0.weight 95% pruned and stored as a 2-bit codebook (0.0 and three shared
// values; sparse) and 2.weight as a 3-bit codebook without zeros (dense). Codes are synthetic.
inline Model codebook_mlp() {
  Model model = sparse_mlp("fp32");
  const at::Tensor keep = model.masks.at("0.weight");
  QuantizedTensor a;
  a.encoding = Encoding::kCodebook;
  a.bits = 2;
  a.codebook = at::tensor({0.0f, -0.5f, 0.25f, 1.0f});
  a.values = (at::arange(keep.numel(), at::kLong).remainder(3) + 1)
                 .reshape(keep.sizes())
                 .mul(keep)
                 .to(at::kByte);
  QuantizedTensor b;
  b.encoding = Encoding::kCodebook;
  b.bits = 3;
  b.codebook = at::linspace(-0.7, 0.7, 8).to(at::kFloat);
  b.values = at::arange(64 * 300, at::kLong).remainder(7).add(1).reshape({64, 300}).to(at::kByte);
  model.quant.mode = "codebook";
  model.quant.tensors["0.weight"] = a;
  model.quant.tensors["2.weight"] = b;
  for (const auto& [name, q] : model.quant.tensors)
    model.tensor(name) = q.dequantize().contiguous();
  return model;
}

}  // namespace mcompress
