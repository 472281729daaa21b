#pragma once
// ONNX export: a Model as an ONNX graph (opset 13) that computes what runtime::Executor
// computes with the int8 kernel policy, for ONNX Runtime and other ONNX consumers.
//
// The graph takes the raw input exactly as `mcompress eval` feeds it (float32 [N, ...input_shape],
// N dynamic) and returns float32 logits [N, num_classes]; the spec's mean/std normalisation is
// part of the graph (Sub, Div). How each encoding is written:
//   fp32      plain float initializers; batchnorms as BatchNormalization nodes.
//   fp16/bf16 float16 (bfloat16) initializers, each Cast to float once; the graph computes in
//             float32, as the runtime does (fp16 is a storage format there).
//   int8      QDQ form: int8 weight initializers through DequantizeLinear (per-channel scales
//             on axis 0). int8-static adds QuantizeLinear/DequantizeLinear pairs with the
//             recorded activation qparams (uint8), and int32 biases, so that ONNX Runtime fuses
//             them into QLinearConv / QGemm / QLinearAdd. int8-dynamic Linear layers use the
//             integer form of ONNX Runtime's dynamic quantization (DynamicQuantizeLinear,
//             MatMulInteger, scale Mul), which it fuses into DynamicQuantizeMatMul.
//   codebook  dense float initializers holding codebook[codes]; pruned (masked) tensors are
//             written dense with their zeros.
// docs/interop.md lists the op mapping and the limits.

#include <cstdint>
#include <map>
#include <string>

#include "mcompress/core/model.h"

namespace mcompress::interop {

struct OnnxOptions {
  /// Name of the graph's input and output.
  std::string input_name = "input";
  std::string output_name = "logits";
  /// Run onnx::checker (and strict shape inference) on the graph before writing it.
  bool check = true;
};

/// What an export produced, for the CLI's summary and for tests.
struct OnnxExportInfo {
  int64_t opset = 13;
  int64_t nodes = 0;
  int64_t initializers = 0;
  int64_t bytes = 0;                         // serialized model size
  std::map<std::string, int64_t> op_counts;  // op type -> node count
  std::string weight_form;                   // "fp32", "fp16 (Cast to float)", "int8 QDQ", ...
};

/// The serialized ONNX model (ModelProto bytes). ModelError naming the layer or tensor when
/// the model cannot be expressed (a quantized tensor of the wrong type or shape, an int8 zero
/// point out of range), FormatError when the ONNX checker rejects the graph it built.
std::string onnx_model_bytes(const Model& model, const OnnxOptions& options = {},
                             OnnxExportInfo* info = nullptr);

/// Writes onnx_model_bytes() to `path` atomically (temporary file in the target folder,
/// renamed into place). The errors of onnx_model_bytes(), IoError naming the path when it
/// cannot be written.
OnnxExportInfo export_onnx(const Model& model, const std::string& path,
                           const OnnxOptions& options = {});

}  // namespace mcompress::interop
