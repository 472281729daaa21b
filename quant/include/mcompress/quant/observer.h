#pragma once
// Calibration observers: watch activations batch by batch and choose uint8 affine
// quantization parameters for them (PyTorch's observers, TensorRT's entropy calibration).

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "mcompress/core/model.h"

namespace mcompress::quant {

enum class ObserverKind { kMinMax, kMovingAverageMinMax, kPercentile, kEntropy, kMse };

/// "minmax", "moving-average-minmax", "percentile", "entropy", "mse".
std::string to_string(ObserverKind kind);
/// ConfigError listing the accepted names.
ObserverKind parse_observer(const std::string& name);

/// Example: ObserverOptions().kind(ObserverKind::kPercentile).percentile(99.99)
struct ObserverOptions {
  ObserverKind kind = ObserverKind::kMinMax;
  double percentile = 99.99;         // kPercentile: hi = p-th percentile, lo = (100 − p)-th
  double averaging_constant = 0.01;  // kMovingAverageMinMax: weight of each new batch
  int64_t bins = 2048;               // histogram observers (percentile, entropy, mse)
  void validate() const;             // ConfigError naming the option
};

/// The qparams rule every observer (and QAT) shares, PyTorch's MinMaxObserver for quint8:
/// the range is widened to contain 0, scale = (hi − lo) / 255 floored at float32 epsilon,
/// zero_point = clamp(round_half_even(−lo / scale), 0, 255), in double precision.
/// `observer` is left empty.
ActivationQParams affine_qparams(double lo, double hi);

/// Observes activations and produces qparams for quint8 (q in [0, 255]).
/// The chosen range always contains 0 (so zero is exact, as padding and ReLU need) and the
/// scale is finite and > 0 even for constant or all-zero inputs.
class Observer {
 public:
  explicit Observer(const ObserverOptions& options);
  /// An observer whose histogram grid covers [lo, hi] (widened to contain 0) from the start
  /// instead of growing with the data: histograms of different ranks then add bin by bin.
  /// Values outside the range still grow the grid, as in the other constructor.
  Observer(const ObserverOptions& options, double lo, double hi);
  ~Observer();
  Observer(Observer&&) noexcept;
  Observer& operator=(Observer&&) noexcept;

  /// Adds one batch of values (any shape, float32). NaN values are a ModelError.
  void observe(const at::Tensor& x);
  /// The qparams for everything observed so far; ModelError if nothing was observed.
  ActivationQParams qparams() const;
  const ObserverOptions& options() const;
  /// The exact min and max of everything observed ({0, 0} before any data).
  std::pair<double, double> observed_range() const;
  /// Data parallel: merges what every rank of mcompress::distributed() observed under this
  /// key, so that qparams() on every rank describe all ranks' batches. Exact for minmax
  /// (min and max over ranks) and for the histogram observers (percentile, entropy, mse) when
  /// every rank built its histogram on the same grid (the range constructor with the same
  /// range); moving-average min/max takes the mean over ranks of their averages. Every rank
  /// must call it for the same keys in the same order. A world of 1 changes nothing.
  /// DistributedError when a peer fails.
  void reduce_across_ranks();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mcompress::quant
