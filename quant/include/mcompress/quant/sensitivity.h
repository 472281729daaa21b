#pragma once
// Per-layer sensitivity of an int8 model and the accuracy guard built on it (the
// accuracy-driven tuning of Intel Neural Compressor): layers whose int8 form costs the most
// accuracy are kept in fp32, one at a time, until the model is within an accuracy budget.
//
// A layer is "kept fp32" by removing its weight from Model::quant.tensors and restoring its
// fp32 master tensor; the runtime then runs that conv/linear with its fp32 kernel (int8-static
// activation qparams stay as calibrated, so its neighbours still run int8).

#include <string>
#include <vector>

#include "mcompress/core/dataset.h"
#include "mcompress/core/model.h"

namespace mcompress::quant {

/// What quantizing one tensor alone costs.
struct LayerSensitivity {
  std::string tensor;      // weight name, e.g. "3.weight"
  double accuracy = 0;     // val accuracy (fraction) with only this tensor int8
  double drop_points = 0;  // (fp32 accuracy − accuracy) · 100; negative when it helps
};

/// Accuracy (fraction) of `model` on `val` with every layer that has an int8 form on its int8
/// kernel (the int8 kernels themselves are judged, not what the auto policy would pick).
double int8_accuracy(const Model& model, const Dataset& val);

/// For every int8 tensor of `quantized_model.quant.tensors`: the accuracy on `val` (runtime,
/// KernelPolicy::kInt8) of the model in which only that tensor is int8 — every other int8
/// entry removed and its master tensor restored from `fp32_model`. Sorted by drop, largest
/// first (ties by tensor name). Other encodings (fp16/bf16) are left as they are.
/// DataError for an empty `val`; ModelError when `fp32_model` is itself quantized or does not
/// have the tensors of `quantized_model`.
std::vector<LayerSensitivity> sensitivity(const Model& fp32_model, const Model& quantized_model,
                                          const Dataset& val);

struct AccuracyGuardResult {
  double max_drop_points = 0;  // the budget
  double fp32_accuracy = 0;    // fp32_model on val (fractions in [0, 1])
  double accuracy_before = 0;  // the model as given, every int8 layer int8
  double accuracy_after = 0;   // the final mix
  bool budget_met = false;     // (fp32_accuracy − accuracy_after) · 100 <= budget
  /// Tensors moved back to fp32, in the order they were moved (most sensitive first).
  std::vector<std::string> kept_fp32;
  /// The ranking used; empty when the model was within budget from the start.
  std::vector<LayerSensitivity> sensitivity;

  double drop_before_points() const { return (fp32_accuracy - accuracy_before) * 100.0; }
  double drop_after_points() const { return (fp32_accuracy - accuracy_after) * 100.0; }
};

/// If the int8 model `quantized` loses more than `max_drop_points` accuracy points on `val`
/// against `fp32_model`, keeps its most sensitive int8 layers in fp32 one at a time (in the
/// order of sensitivity()), re-evaluating after each, until it is within budget or no int8
/// layer is left. Edits `quantized` in place and returns what it did.
/// ConfigError for a negative or NaN budget; DataError for an empty `val`; ModelError as
/// sensitivity().
AccuracyGuardResult apply_accuracy_guard(Model& quantized, const Model& fp32_model,
                                         const Dataset& val, double max_drop_points);

}  // namespace mcompress::quant
