#pragma once
// Structured pruning (Li et al. 2017, "Pruning Filters for Efficient ConvNets"): whole conv
// filters or linear output units are removed by the L1 norm of their weights, and the layers
// that read them are rewritten, so the result is a smaller dense model with a smaller spec.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "mcompress/core/arch_spec.h"
#include "mcompress/core/model.h"

namespace mcompress::prune {

/// A layer whose output channels (conv2d) or units (linear) can be removed, and everything that
/// reads them: the channel-wise layers up to the one conv2d/linear that consumes them.
struct ChannelChain {
  int64_t producer = 0;             // conv2d or linear layer index
  std::vector<int64_t> batchnorms;  // batchnorm layers in between (rewritten too)
  int64_t consumer = 0;             // the conv2d or linear layer reading the channels
  int64_t columns_per_channel = 1;  // a linear after flatten reads H·W columns per channel
};

/// Every chain of `spec`, in layer order. Conv/linear layers that cannot be pruned this way are
/// listed in `skipped` (if given) as "layer <i> (<type>): <why>": the class layer, residual
/// blocks (their inner width is not a spec field: it equals out_channels), layers feeding a
/// residual block (its shortcut shares their channels), grouped convolutions.
std::vector<ChannelChain> channel_chains(const ArchSpec& spec,
                                         std::vector<std::string>* skipped = nullptr);

/// What structured pruning narrows in a producer: its output channels (conv2d) or units (linear).
int64_t prunable_width(const LayerSpec& layer);

/// L1 norm of each output channel (row) of a conv or linear weight: [out].
at::Tensor filter_l1_norms(const at::Tensor& weight);

/// The `keep` channels of largest norm, in ascending index order. Ties are removed in index
/// order (the lower index first), as in magnitude pruning.
std::vector<int64_t> channels_to_keep(const at::Tensor& norms, int64_t keep);

/// A copy of `model` without the producer's channels missing from `keep` (ascending, unique):
/// the producer's weight rows and bias, the batchnorms' four tensors, the consumer's input
/// channels (or blocks of columns_per_channel columns) and any masks of them are sliced, and the
/// spec's widths rewritten. Its function equals the original's whenever the removed channels
/// output exactly zero. History, recipe and seed are kept. ConfigError for a quantized model.
Model remove_channels(const Model& model, const ChannelChain& chain,
                      const std::vector<int64_t>& keep);

}  // namespace mcompress::prune
