#pragma once
// A Conv or Gemm step's weights as inference kernels compute with them. The runtime's kernels
// and the ONNX exporter both take them from here, so an exported graph computes with exactly
// the runtime's numbers.

#include <ATen/core/Tensor.h>

#include <string>

#include "mcompress/core/graph.h"
#include "mcompress/core/lowering.h"

namespace mcompress {

class Model;
struct QuantizedTensor;

struct FoldedWeights {
  at::Tensor weight;  // [out, ...]
  at::Tensor bias;    // [out]
};

/// The weight and bias of `step`'s anchor (a Conv or Gemm) with the step's BatchNormalization,
/// if it has one, folded in per output channel: W' = W·γ/√(σ²+ε), b' = (b − μ)·γ/√(σ²+ε) + β.
/// A missing bias is zeros. `info` is `model.graph().analyze()`. ModelError for a step whose
/// anchor is not a Conv or Gemm.
FoldedWeights folded_weights(const Model& model, const GraphInfo& info, const LoweredStep& step);

/// The qint8 weight an int8 kernel packs: the stored codes when `stored` holds int8 codes of
/// exactly this weight (the quantization stage decided them; no batchnorm was folded in), else
/// symmetric codes of `weight`'s values, per channel (axis 0) or per tensor. ModelError naming
/// `name` for stored codes that are not int8, whose zero point is outside int8, whose axis is
/// neither 0 nor per-tensor, or whose scale count does not match.
at::Tensor int8_kernel_weight(const std::string& name, const at::Tensor& weight,
                              const QuantizedTensor* stored, bool per_channel);

struct Int8StepWeights {
  std::string name;    // the weight tensor's
  at::Tensor qweight;  // qint8, per channel (axis 0) or per tensor as the stored codes are
  at::Tensor bias;     // float32 [out], batchnorm folded
};

/// A Conv or Gemm step of an int8 model as its int8 kernel packs it: folded_weights, then the
/// stored codes of the weight unless a batchnorm was folded in (then symmetric codes of the
/// folded values, with the stored codes' granularity). ModelError when the weight has no int8
/// codes.
Int8StepWeights int8_step_weights(const Model& model, const GraphInfo& info,
                                  const LoweredStep& step);

}  // namespace mcompress
