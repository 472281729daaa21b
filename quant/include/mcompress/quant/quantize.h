#pragma once
// The quantization stage: fp16/bf16 storage, int8 dynamic, int8 static (calibrated).
// It decides encodings and activation ranges (Model::quant); the runtime runs them.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "mcompress/core/dataset.h"
#include "mcompress/core/model.h"
#include "mcompress/core/train.h"
#include "mcompress/quant/observer.h"
#include "mcompress/quant/sensitivity.h"
#include "mcompress/quant/tensor_quant.h"

namespace mcompress::quant {

/// The fine-tuning that follows a quantization which changes the weights (QAT, codebooks): 2
/// epochs of Adam at lr 1e-4 with a cosine schedule, the starting point validated as epoch 0
/// (so that a converged model never ends below where it started on validation).
TrainOptions quant_fine_tuning();

enum class QuantMode { kFp16, kBf16, kInt8Dynamic, kInt8Static };
/// "fp16", "bf16", "int8-dynamic", "int8-static".
std::string to_string(QuantMode mode);
QuantMode parse_quant_mode(const std::string& name);  // ConfigError listing the modes

/// Example: QuantizeOptions o; o.mode = QuantMode::kInt8Static; o.observer.kind =
/// ObserverKind::kEntropy;
struct QuantizeOptions {
  QuantMode mode = QuantMode::kInt8Static;
  Granularity granularity = Granularity::kPerChannel;  // int8 weights
  ObserverOptions observer;                            // int8-static activations
  bool compare_observers = false;   // calibrate with every observer, keep the best on `val`
  int64_t calib_batches = 32;       // int8-static: calibration batches ...
  int64_t calib_batch_size = 64;    // ... of this size
  bool half_fallback_bf16 = false;  // fp16: keep out-of-range tensors in bf16 instead of fp32
  /// int8 modes: the most accuracy (points on `val`) quantization may cost; the most sensitive
  /// layers are kept in fp32 until the model is within it (apply_accuracy_guard).
  double max_accuracy_drop = -1;  // points; < 0 = off
  void validate() const;          // ConfigError naming the option
};

/// One tensor's decision, for the report.
struct TensorDecision {
  std::string tensor;
  std::string encoding;  // what it is stored as
  std::string note;      // e.g. "kept fp32: 3 values beyond ±65504"
};

struct ObserverScore {
  std::string observer;
  double val_accuracy = 0;
};

struct QuantizeReport {
  std::string mode;
  std::string observer;  // int8-static: the observer whose ranges were kept
  std::vector<TensorDecision> tensors;
  std::vector<ObserverScore> comparison;  // with compare_observers
  std::vector<std::string> warnings;
  // With max_accuracy_drop >= 0 (int8 modes); accuracies are fractions, -1 = not measured.
  double max_accuracy_drop = -1;       // the budget, points
  double val_accuracy_fp32 = -1;       // the model before quantization
  double val_accuracy_int8_all = -1;   // every candidate layer int8
  double val_accuracy_quantized = -1;  // the final mix
  bool accuracy_budget_met = true;
  std::vector<std::string> kept_fp32;         // layers the guard moved back to fp32, in order
  std::vector<LayerSensitivity> sensitivity;  // the guard's ranking (empty if not needed)
  /// Figures of a mode of its own, e.g. codebook: bits, val accuracy (fractions) in fp32, after
  /// k-means and after fine-tuning.
  std::map<std::string, double> metrics;
  /// The report as a JSON document for Model::history.
  std::string to_json() const;
};

/// Quantizes `model` in place. `calib` feeds int8-static calibration (DataError when it has
/// fewer examples than one batch... or none at all); `val` scores observers when comparing
/// and judges max_accuracy_drop (DataError when one of those needs it and it is empty).
QuantizeReport quantize_model(Model& model, const QuantizeOptions& options, const Dataset& calib,
                              const Dataset& val);

/// Activation qparams for every key the runtime needs, from `batches` batches of `data`.
std::map<std::string, ActivationQParams> calibrate(const Model& model, const Dataset& data,
                                                   const ObserverOptions& observer, int64_t batches,
                                                   int64_t batch_size);

}  // namespace mcompress::quant
