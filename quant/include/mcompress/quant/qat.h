#pragma once
// Quantization-aware training: fine-tune with fake-quantized weights and activations (the
// straight-through estimator), then convert to the same int8-static form quantize_model makes.

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>

#include "mcompress/core/dataset.h"
#include "mcompress/core/model.h"
#include "mcompress/core/train.h"
#include "mcompress/core/trainable_network.h"
#include "mcompress/quant/observer.h"
#include "mcompress/quant/quantize.h"
#include "mcompress/quant/tensor_quant.h"

namespace mcompress::quant {

/// Example: QatOptions o; o.train.epochs = 3; o.granularity = Granularity::kPerTensor;
struct QatOptions {
  /// The fine-tuning run: quant_fine_tuning() with batchnorm statistics frozen. The runtime
  /// folds batchnorm with its running statistics; QAT must train against that same folded
  /// form, not against batch statistics that shift under fake quantization.
  TrainOptions train = [] {
    TrainOptions t = quant_fine_tuning();
    t.freeze_batchnorm = true;
    return t;
  }();
  /// Activations: the initial calibration uses this observer; during training every range is a
  /// moving average of batch min/max with observer.averaging_constant (0.01).
  ObserverOptions observer = [] {
    ObserverOptions o;
    o.kind = ObserverKind::kMovingAverageMinMax;
    o.averaging_constant = 0.01;
    return o;
  }();
  Granularity granularity = Granularity::kPerChannel;  // int8 weights
  /// Stop updating activation ranges once this many epochs are done (0: never update them after
  /// calibration); -1: never freeze.
  int64_t freeze_observers_epoch = -1;
  int64_t calib_batches = 32;     // initial calibration: batches of the training data ...
  int64_t calib_batch_size = 64;  // ... of this size
  void validate() const;          // ConfigError naming the option
};

/// Symmetric int8 fake quantization of a weight (straight-through gradient): scale =
/// max|w_c| / 127 per output channel (axis 0) or over the tensor, computed from `w` and
/// detached; zero point 0; codes in [−127, 127]; an all-zero channel gets scale 1.
torch::Tensor fake_quantize_weight(const torch::Tensor& w, Granularity granularity);

/// The fake quantization a QAT run plugs into a network: weights as fake_quantize_weight,
/// activations as uint8 affine [0, 255] fake quantization with moving-average min/max ranges
/// (updated only while the network is in training mode, without gradient).
class QatFakeQuant {
 public:
  QatFakeQuant(Granularity granularity, double averaging_constant);

  /// Starts the ranges from calibrated qparams (the range they represent).
  void seed(const std::map<std::string, ActivationQParams>& qparams);
  /// Hooks for `net` (which decides training mode); they refer to this object and `net`.
  ForwardHooks hooks(const TrainableNetwork& net);
  /// While frozen, ranges are not updated (keys never seen still take their first batch).
  void set_frozen(bool frozen) { frozen_ = frozen; }
  bool frozen() const { return frozen_; }

  /// The current ranges as uint8 qparams, observer "qat-moving-average".
  std::map<std::string, ActivationQParams> qparams() const;

  struct Range {
    double lo = 0, hi = 0;
    double scale = 1;
    int64_t zero_point = 0;
  };
  using Ranges = std::unordered_map<std::string, Range>;
  const Ranges& ranges() const { return ranges_; }
  /// Data parallel: every range becomes the mean over mcompress::distributed()'s ranks of
  /// their moving averages (each rank saw only its part of every batch), so that all ranks
  /// fake-quantize alike; every rank must hold the same keys. A world of 1 changes nothing.
  void average_across_ranks();
  void set_ranges(Ranges ranges) { ranges_ = std::move(ranges); }

 private:
  torch::Tensor activation(const TrainableNetwork& net, const std::string& key,
                           const torch::Tensor& x);

  Granularity granularity_;
  double averaging_constant_;
  bool frozen_ = false;
  Ranges ranges_;
};

/// Fine-tunes `model` with fake quantization on `train` (validating on `val`, which may be
/// empty) and converts it in place to int8-static: int8 conv/linear weights in
/// model.quant.tensors (fp32 masters = their dequantized values) and the QAT activation ranges
/// for every runtime key. Report: mode "qat", observer "qat-moving-average".
/// ConfigError if the model is already quantized; DataError for unusable data.
QuantizeReport qat_model(Model& model, const QatOptions& options, const Dataset& train,
                         const Dataset& val);

}  // namespace mcompress::quant
