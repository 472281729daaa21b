#pragma once
// Which lowered steps (core/lowering.h) of an int8-quantized model run int8, decided in one
// place for the runtime's int8 plan (runtime/src/graph_plan.cpp) and the ONNX exporter's QDQ
// graph (interop/src/onnx.cpp), so that an exported model computes what the runtime computes.
//
// int8-static: Conv and Gemm steps with int8 weights, and Add and Concat, run quint8 -> quint8
// with their output's calibrated qparams (an Add requantizes its inputs, as ONNX QLinearAdd);
// Relu, Clip, the pools, Flatten, Reshape and the identities run on whatever domain flows in
// and keep their input's qparams; every other step is an fp32 island. int8-dynamic: Gemm steps
// with int8 weights quantize their input per batch (as PyTorch's quantize_dynamic, Linear only).

#include <map>
#include <string>
#include <vector>

#include "mcompress/core/graph.h"
#include "mcompress/core/lowering.h"
#include "mcompress/core/model.h"

namespace mcompress {

enum class Int8Form {
  kNone,         // fp32 (an island between dequantize and quantize in an int8-static plan)
  kStatic,       // quint8 in, quint8 out with the output's calibrated qparams
  kDynamic,      // float in, float out: int8 weights, the input quantized per batch
  kPassthrough,  // runs on whichever domain flows in and keeps its input's qparams
};

struct Int8Step {
  Int8Form form = Int8Form::kNone;
  std::string why_not;  // kNone where an int8 form was possible: why there is none
};

/// True for a step that computes the same on quint8 tensors as on floats and keeps its
/// input's qparams (LibTorch has QuantizedCPU kernels for it), whatever the model's mode.
bool passes_quint8_through(const Graph& graph, const GraphInfo& info, const LoweredStep& step);

/// The calibration key of every value: the preprocessed input is "input", a step that passes
/// quint8 through keeps its input's key (the int8 plan runs it on its input's qparams), and
/// every other step's output is its value name.
std::map<std::string, std::string> calibration_keys(const Graph& graph, const GraphInfo& info,
                                                    const std::vector<LoweredStep>& lowered);

/// The calibrated qparams of activation `key`, or nullptr. Sequential models calibrated before
/// the runtime ran them as graphs named a residual block's inner activations after its layers
/// ("5.conv1", "5.conv2", "5.shortcut"); their values are now "5.relu1", "5.bn2" and
/// "5.shortcut.1", and such files keep loading.
const ActivationQParams* find_qparams(const Model& model, const std::string& key);

/// The int8 form of every lowered step under model.quant (kNone or kPassthrough throughout for
/// a model that is not int8). `keys` is calibration_keys() of the same steps.
std::vector<Int8Step> int8_steps(const Model& model, const GraphInfo& info,
                                 const std::vector<LoweredStep>& lowered,
                                 const std::map<std::string, std::string>& keys);

}  // namespace mcompress
