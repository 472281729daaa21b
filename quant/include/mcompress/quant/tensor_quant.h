#pragma once
// Weight conversions: int8 (symmetric, per output channel or per tensor), fp16 and bf16,
// each with the checks that keep a conversion from silently destroying values.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <set>
#include <string>

#include "mcompress/core/model.h"

namespace mcompress::quant {

enum class Granularity { kPerChannel, kPerTensor };

/// The tensors int8 modes quantize, by name: the weights of the graph's Conv and Gemm nodes
/// (for a sequential model: its conv2d and linear layers and the convolutions inside residual
/// blocks); biases and batchnorms stay fp32. `linear_only`: Gemm only, int8-dynamic's scope.
std::set<std::string> int8_weight_names(const Model& model, bool linear_only = false);

/// Symmetric int8: scale[c] = max|W[c,...]| / 127, q = clamp(round_half_even(W / scale), −127,
/// 127), zero_point 0; an all-zero channel gets scale 1 and codes 0. Per channel along axis 0.
QuantizedTensor quantize_weight_int8(const at::Tensor& weight, Granularity granularity);

/// What converting a tensor to a 16-bit float would do to it.
struct HalfRangeCheck {
  int64_t overflow = 0;                 // finite values beyond the type's max (would become ±Inf)
  int64_t underflow = 0;                // non-zero values that would become 0
  int64_t nonzero = 0;                  // non-zero values in the input
  Encoding encoding = Encoding::kFp16;  // the type checked (kFp16 or kBf16), for describe()
  bool safe() const;                    // no overflow, and at most 1% of the non-zeros underflow
  std::string describe() const;  // "3 values beyond ±65504" / "12% of non-zeros underflow to 0"
};

HalfRangeCheck check_half_range(const at::Tensor& weight, Encoding encoding);

/// fp16 or bf16 copy of `weight` (round to nearest even), encoding set accordingly.
QuantizedTensor to_half(const at::Tensor& weight, Encoding encoding);

}  // namespace mcompress::quant
