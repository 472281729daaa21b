#pragma once
// Weight sharing (Deep Compression, Han et al. 2016): each conv/linear weight keeps at most
// 2^bits distinct values, found by k-means; the file stores the shared values and a b-bit code
// per weight. The shared values are then fine-tuned: every optimizer step moves the weights,
// and each cluster's weights are set back to their mean, which is the cluster's new value.

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "mcompress/core/dataset.h"
#include "mcompress/core/model.h"
#include "mcompress/core/train.h"
#include "mcompress/quant/quantize.h"

namespace mcompress::quant {

/// Example: CodebookOptions o; o.bits = 4; o.train.epochs = 2;
struct CodebookOptions {
  int64_t bits = 4;                 // 2 to 8: at most 2^bits shared values per tensor
  int64_t kmeans_iterations = 100;  // Lloyd iterations at most (stops when nothing moves)
  /// The fine-tuning of the shared values (quant_fine_tuning(): it never ends below the
  /// k-means result on `val`). epochs = 0 keeps the k-means values.
  TrainOptions train = quant_fine_tuning();
  void validate() const;  // ConfigError naming the option
};

/// One tensor's codebook by 1-D k-means with linear initialisation between the smallest and
/// largest weight (the initialisation Deep Compression found best: it keeps the rare large
/// weights). When the tensor has exact zeros (pruned entries), code 0 is the shared value 0.0
/// and only the non-zero weights are clustered, into the other 2^bits − 1 values: zeros stay
/// zero and non-zeros never become zero, so a pruning mask survives. Deterministic. A tensor
/// with no more distinct values than codes keeps them exactly.
QuantizedTensor share_weights(const at::Tensor& weight, int64_t bits, int64_t max_iterations = 100);

/// Sets each cluster's shared value to the mean of its weights (codes fixed; a code whose value
/// is 0.0 keeps it) and the weights to their cluster's value, in place. What every
/// fine-tuning step does after the optimizer has moved the weights.
void tie_weights(at::Tensor& weight, QuantizedTensor& shared);

/// Replaces the conv/linear weights of `model` by shared values (share_weights), fine-tunes the
/// values on `train` (validating on `val`, which may be empty; pruning masks stay enforced)
/// and records them in model.quant (mode "codebook"; fp32 masters = codebook[codes]).
/// Biases and batchnorm stay fp32. ConfigError if the model is already quantized.
QuantizeReport codebook_model(Model& model, const CodebookOptions& options, const Dataset& train,
                              const Dataset& val);

}  // namespace mcompress::quant
