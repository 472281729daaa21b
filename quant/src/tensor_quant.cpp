#include "mcompress/quant/tensor_quant.h"

#include <ATen/ATen.h>

#include <cmath>
#include <iomanip>
#include <limits>
#include <map>
#include <sstream>
#include <vector>

#include "mcompress/core/error.h"

namespace mcompress::quant {
namespace {

constexpr float kInt8Max = 127.0f;

/// The weight as a contiguous fp32 CPU tensor without autograd history.
at::Tensor as_float_cpu(const at::Tensor& weight, const char* what) {
  MCOMPRESS_CHECK(weight.defined(), ModelError, what, ": the weight tensor is undefined");
  MCOMPRESS_CHECK(at::isFloatingType(weight.scalar_type()), ModelError, what,
                  ": expected a floating-point weight, got ", weight.scalar_type());
  return weight.detach().to(at::kCPU, at::kFloat).contiguous();
}

at::ScalarType half_type(Encoding encoding, const char* what) {
  switch (encoding) {
    case Encoding::kFp16:
      return at::kHalf;
    case Encoding::kBf16:
      return at::kBFloat16;
    default:
      break;
  }
  throw ConfigError(std::string(what) + " needs encoding fp16 or bf16, got " + to_string(encoding));
}

/// q = clamp(round_half_even(w * (1 / scale)), -127, 127) with `scale` broadcastable to `w`.
/// LibTorch's quantize_per_tensor / quantize_per_channel (1.13, CPU, no FBGEMM and FBGEMM's
/// non-legacy path alike) compute round(w * inv_scale) with inv_scale = 1.0f / scale in
/// float32, not w / scale; the two differ in the last ulp for a few values per million, so
/// we do exactly the same to get identical codes.
at::Tensor int8_codes(const at::Tensor& w, const at::Tensor& scale) {
  at::Tensor inv = at::reciprocal(scale);  // float32, as LibTorch's 1.0f / scale
  at::Tensor q = at::round(w * inv);
  at::Tensor bad = at::isinf(inv);
  if (bad.any().item<bool>()) {
    // A subnormal scale (max |W| < ~3.7e-37) has no finite float reciprocal: divide in double.
    at::Tensor qd = at::round(w.to(at::kDouble) / scale.to(at::kDouble)).to(at::kFloat);
    q = at::where(bad.expand_as(q), qd, q);
  }
  return q.clamp(-kInt8Max, kInt8Max).to(at::kChar);
}

std::string format_percent(double fraction) {
  std::ostringstream out;
  out << std::setprecision(3) << 100.0 * fraction << "%";
  return out.str();
}

}  // namespace

std::set<std::string> int8_weight_names(const Model& model, bool linear_only) {
  const Graph& graph = model.graph();
  std::map<std::string, const Node*> nodes;
  for (const Node& node : graph.nodes) nodes[node.name] = &node;
  std::set<std::string> out;
  for (const GraphParam& p : graph.parameters()) {
    if (p.spec.role != "weight" || !p.spec.compressible) continue;
    const std::string& op = nodes.at(p.node)->op;
    if (op == "Gemm" || (!linear_only && op == "Conv")) out.insert(p.name);
  }
  return out;
}

QuantizedTensor quantize_weight_int8(const at::Tensor& weight, Granularity granularity) {
  at::Tensor w = as_float_cpu(weight, "int8 quantization");
  MCOMPRESS_CHECK(at::isfinite(w).all().item<bool>(), ModelError,
                  "int8 quantization: the weight contains NaN or Inf values");
  const bool per_channel = granularity == Granularity::kPerChannel;
  MCOMPRESS_CHECK(!per_channel || w.dim() >= 1, ModelError,
                  "int8 quantization: per-channel needs a tensor with at least 1 dimension");

  // Symmetric: scale = max|W| / 127 per output channel (axis 0) or for the whole tensor.
  at::Tensor amax;
  if (per_channel) {
    const int64_t channels = w.size(0);
    at::Tensor rows = w.reshape({channels, -1});
    amax = rows.size(1) == 0 ? at::zeros({channels}, w.options()) : rows.abs().amax(/*dim=*/1);
  } else {
    amax = w.numel() == 0 ? at::zeros({1}, w.options()) : w.abs().max().reshape({1});
  }
  at::Tensor scale = amax / kInt8Max;
  // An all-zero channel gets scale 1 (codes are 0 anyway); a channel whose max|W| is so small
  // that max|W| / 127 underflows to 0 gets the smallest positive float instead.
  scale = at::where(amax == 0, at::ones_like(scale), scale);
  scale =
      at::where(scale == 0, at::full_like(scale, std::numeric_limits<float>::denorm_min()), scale);

  QuantizedTensor out;
  out.encoding = Encoding::kInt8;
  if (per_channel) {
    std::vector<int64_t> shape(static_cast<size_t>(w.dim()), 1);
    shape[0] = scale.numel();
    out.values = int8_codes(w, scale.reshape(shape));
    out.axis = 0;
  } else {
    out.values = int8_codes(w, scale);
    out.axis = -1;
  }
  out.scale = scale.contiguous();
  out.zero_point = at::zeros({scale.numel()}, at::kInt);
  return out;
}

bool HalfRangeCheck::safe() const {
  // underflow <= 1% of nonzero, in integers.
  return overflow == 0 && underflow * 100 <= nonzero;
}

std::string HalfRangeCheck::describe() const {
  std::ostringstream out;
  const char* name = encoding == Encoding::kBf16 ? "bf16" : "fp16";
  const char* max_text = encoding == Encoding::kBf16 ? "3.3895e+38" : "65504";
  std::vector<std::string> parts;
  if (overflow > 0) {
    parts.push_back(std::to_string(overflow) + (overflow == 1 ? " value" : " values") +
                    " beyond ±" + max_text + " (would become ±Inf in " + name + ")");
  }
  if (underflow > 0) {
    const double fraction = nonzero > 0 ? static_cast<double>(underflow) / nonzero : 0.0;
    parts.push_back(format_percent(fraction) + " of non-zeros underflow to 0 in " + name + " (" +
                    std::to_string(underflow) + " of " + std::to_string(nonzero) + ")");
  }
  if (parts.empty()) {
    out << "all " << nonzero << " non-zero values fit in " << name;
  } else {
    for (size_t i = 0; i < parts.size(); ++i) out << (i ? "; " : "") << parts[i];
  }
  return out.str();
}

HalfRangeCheck check_half_range(const at::Tensor& weight, Encoding encoding) {
  const at::ScalarType type = half_type(encoding, "check_half_range");
  MCOMPRESS_CHECK(weight.defined(), ModelError, "check_half_range: the weight is undefined");
  MCOMPRESS_CHECK(at::isFloatingType(weight.scalar_type()), ModelError,
                  "check_half_range: expected a floating-point weight, got ", weight.scalar_type());
  // Convert exactly as to_half() does (round to nearest even, subnormals kept) and count
  // what went wrong: finite values that became ±Inf (fp16: |x| >= 65520, just past the max
  // 65504; bf16: |x| >= ~3.3962e38) and non-zero values that became 0 (fp16: |x| <= 2^-25,
  // half its smallest subnormal 2^-24; bf16: |x| <= 2^-134, half of 2^-133 ≈ 9.2e-41).
  at::Tensor x = weight.detach().to(at::kCPU);
  at::Tensor h = x.to(type);
  HalfRangeCheck check;
  check.encoding = encoding;
  at::Tensor nonzero = x != 0;
  check.nonzero = nonzero.sum().item<int64_t>();
  check.overflow = (at::isfinite(x) & at::isinf(h)).sum().item<int64_t>();
  check.underflow = (nonzero & (h == 0)).sum().item<int64_t>();
  return check;
}

QuantizedTensor to_half(const at::Tensor& weight, Encoding encoding) {
  const at::ScalarType type = half_type(encoding, "to_half");
  MCOMPRESS_CHECK(weight.defined(), ModelError, "to_half: the weight is undefined");
  MCOMPRESS_CHECK(at::isFloatingType(weight.scalar_type()), ModelError,
                  "to_half: expected a floating-point weight, got ", weight.scalar_type());
  QuantizedTensor out;
  out.encoding = encoding;
  // .to() rounds to nearest even; copy=true so the result never aliases the caller's tensor.
  out.values =
      weight.detach().to(at::kCPU, type, /*non_blocking=*/false, /*copy=*/true).contiguous();
  return out;
}

}  // namespace mcompress::quant
