#include "mcompress/prune/structured.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <numeric>

#include "mcompress/core/error.h"

namespace mcompress::prune {
namespace {

bool is_batchnorm(LayerType t) {
  return t == LayerType::kBatchNorm1d || t == LayerType::kBatchNorm2d;
}

// Layers that act on each channel separately, so a channel can be removed through them.
bool is_channelwise(LayerType t) {
  return t == LayerType::kReLU || t == LayerType::kMaxPool2d || t == LayerType::kAvgPool2d ||
         t == LayerType::kAdaptiveAvgPool2d || t == LayerType::kDropout;
}

std::string layer_name(const ArchSpec& spec, size_t i) {
  return "layer " + std::to_string(i) + " (" + to_string(spec.layers[i].type) + ")";
}

// Follows the outputs of layer `producer` to their consumer; "" on success, else why not.
std::string follow(const ArchSpec& spec, const std::vector<std::vector<int64_t>>& shapes,
                   size_t producer, ChannelChain& chain) {
  const auto& layers = spec.layers;
  if (layers[producer].type == LayerType::kConv2d && layers[producer].groups != 1) {
    return "grouped convolution";
  }
  chain.producer = static_cast<int64_t>(producer);
  for (size_t j = producer + 1; j < layers.size(); ++j) {
    const LayerSpec& l = layers[j];
    if (is_batchnorm(l.type)) {
      chain.batchnorms.push_back(static_cast<int64_t>(j));
    } else if (l.type == LayerType::kFlatten) {
      const auto& in = shapes[j - 1];
      chain.columns_per_channel = 1;
      for (size_t d = 1; d < in.size(); ++d) chain.columns_per_channel *= in[d];
    } else if (l.type == LayerType::kResidual) {
      return "feeds residual block " + std::to_string(j) + ", whose shortcut shares its channels";
    } else if (l.type == LayerType::kConv2d && l.groups != 1) {
      return "feeds grouped convolution " + std::to_string(j);
    } else if (l.type == LayerType::kConv2d || l.type == LayerType::kLinear) {
      chain.consumer = static_cast<int64_t>(j);
      return "";
    } else if (!is_channelwise(l.type)) {
      return "feeds " + layer_name(spec, j) + ", which mixes channels";
    }
  }
  return "its outputs are the classes";
}

at::Tensor column_index(const std::vector<int64_t>& keep, int64_t columns_per_channel) {
  std::vector<int64_t> cols;
  cols.reserve(keep.size() * static_cast<size_t>(columns_per_channel));
  for (int64_t c : keep) {
    for (int64_t k = 0; k < columns_per_channel; ++k) cols.push_back(c * columns_per_channel + k);
  }
  return at::tensor(cols, at::kLong);
}

}  // namespace

std::vector<ChannelChain> channel_chains(const ArchSpec& spec, std::vector<std::string>* skipped) {
  const auto shapes = spec.infer_shapes();
  std::vector<ChannelChain> chains;
  for (size_t i = 0; i < spec.layers.size(); ++i) {
    const LayerType t = spec.layers[i].type;
    std::string why;
    ChannelChain chain;
    if (t == LayerType::kResidual) {
      why = "residual block (its inner width is not a spec field)";
    } else if (t == LayerType::kConv2d || t == LayerType::kLinear) {
      why = follow(spec, shapes, i, chain);
    } else {
      continue;
    }
    if (why.empty()) {
      chains.push_back(chain);
    } else if (skipped != nullptr) {
      skipped->push_back(layer_name(spec, i) + ": " + why);
    }
  }
  return chains;
}

int64_t prunable_width(const LayerSpec& l) {
  return l.type == LayerType::kConv2d ? l.out_channels : l.out_features;
}

at::Tensor filter_l1_norms(const at::Tensor& weight) {
  MCOMPRESS_CHECK(weight.dim() >= 2, ModelError,
                  "filter norms need a conv or linear weight, got shape ",
                  shape_to_string(weight.sizes().vec()));
  return weight.detach().abs().reshape({weight.size(0), -1}).sum(1);
}

std::vector<int64_t> channels_to_keep(const at::Tensor& norms, int64_t keep) {
  const int64_t n = norms.numel();
  MCOMPRESS_CHECK(keep >= 1 && keep <= n, ModelError, "cannot keep ", keep, " of ", n, " channels");
  const auto v = norms.to(at::kDouble).contiguous();
  const double* key = v.data_ptr<double>();
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  // Removal order: smallest norm first, then lower index (a strict total order).
  std::stable_sort(order.begin(), order.end(),
                   [key](int64_t a, int64_t b) { return key[a] < key[b]; });
  std::vector<int64_t> kept(order.begin() + (n - keep), order.end());
  std::sort(kept.begin(), kept.end());
  return kept;
}

Model remove_channels(const Model& model, const ChannelChain& chain,
                      const std::vector<int64_t>& keep) {
  MCOMPRESS_CHECK(model.quant.empty(), ConfigError, "the model is quantized (", model.quant.mode,
                  "); prune its fp32 original, then quantize");
  ArchSpec spec = model.spec();
  LayerSpec& producer = spec.layers.at(static_cast<size_t>(chain.producer));
  const int64_t width = prunable_width(producer);
  MCOMPRESS_CHECK(!keep.empty() && std::is_sorted(keep.begin(), keep.end()) &&
                      std::adjacent_find(keep.begin(), keep.end()) == keep.end() &&
                      keep.front() >= 0 && keep.back() < width,
                  ModelError, "layer ", chain.producer,
                  ": channels to keep must be ascending, unique and in [0, ", width, ")");
  std::map<std::string, at::Tensor> tensors;
  for (const auto& [name, t] : model.tensors()) tensors[name] = t.clone();
  std::map<std::string, at::Tensor> masks;
  for (const auto& [name, m] : model.masks) masks[name] = m.clone();
  auto slice = [&](const std::string& name, int64_t dim, const at::Tensor& index) {
    tensors.at(name) = tensors.at(name).index_select(dim, index).contiguous();
    auto it = masks.find(name);
    if (it != masks.end()) it->second = it->second.index_select(dim, index).contiguous();
  };

  const auto index = at::tensor(keep, at::kLong);
  const auto n = static_cast<int64_t>(keep.size());
  const std::string p = std::to_string(chain.producer) + ".";
  slice(p + "weight", 0, index);
  if (producer.bias) slice(p + "bias", 0, index);
  (producer.type == LayerType::kConv2d ? producer.out_channels : producer.out_features) = n;
  for (int64_t b : chain.batchnorms) {
    const std::string prefix = std::to_string(b) + ".";
    for (const char* field : {"weight", "bias", "running_mean", "running_var"})
      slice(prefix + field, 0, index);
    spec.layers[static_cast<size_t>(b)].num_features = n;
  }
  LayerSpec& consumer = spec.layers.at(static_cast<size_t>(chain.consumer));
  slice(std::to_string(chain.consumer) + ".weight", 1,
        chain.columns_per_channel == 1 ? index : column_index(keep, chain.columns_per_channel));
  (consumer.type == LayerType::kConv2d ? consumer.in_channels : consumer.in_features) =
      n * chain.columns_per_channel;

  Model out = Model::from_tensors(spec, std::move(tensors));
  out.masks = std::move(masks);
  out.history = model.history;
  out.recipe = model.recipe;
  out.seed = model.seed;
  return out;
}

}  // namespace mcompress::prune
