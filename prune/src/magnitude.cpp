#include "mcompress/prune/magnitude.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "mcompress/core/error.h"

namespace mcompress::prune {

bool is_prunable(const ArchSpec& spec, const TensorInfo& info) {
  if (info.role != TensorRole::kWeight) return false;
  const LayerType type = spec.layers.at(static_cast<size_t>(info.layer)).type;
  if (type == LayerType::kLinear || type == LayerType::kConv2d) return true;
  // Inside a residual block the 4-D weights are its convolutions; the 1-D ones batchnorm's.
  return type == LayerType::kResidual && info.shape.size() == 4;
}

std::vector<std::string> prunable_tensors(const ArchSpec& spec) {
  std::vector<std::string> out;
  for (const auto& info : spec.tensors()) {
    if (is_prunable(spec, info)) out.push_back(info.name);
  }
  return out;
}

std::vector<std::string> prunable_tensors(const Model& model) {
  if (model.is_sequential()) return prunable_tensors(model.spec());
  std::vector<std::string> out;
  for (const GraphParam& p : model.graph().parameters()) {
    if (p.spec.compressible) out.push_back(p.name);
  }
  return out;
}

std::vector<at::Tensor> global_magnitude_masks(const std::vector<at::Tensor>& weights,
                                               double sparsity,
                                               const std::vector<at::Tensor>& previous) {
  MCOMPRESS_CHECK(sparsity >= 0 && sparsity <= 1, ConfigError, "sparsity must be in [0, 1], got ",
                  sparsity);
  MCOMPRESS_CHECK(previous.empty() || previous.size() == weights.size(), ModelError, "got ",
                  previous.size(), " previous masks for ", weights.size(), " tensors");
  // One ranking key per entry, concatenated in tensor order: |w|, or -1 for an entry already
  // pruned so that it is removed first whatever its stored value.
  std::vector<float> key;
  std::vector<int64_t> offsets = {0};
  for (size_t t = 0; t < weights.size(); ++t) {
    const auto w = weights[t].detach().to(at::kFloat).contiguous().abs().reshape({-1});
    MCOMPRESS_CHECK(at::isfinite(w).all().item<bool>(), ModelError,
                    "cannot rank weights by magnitude: tensor ", t, " has non-finite values");
    at::Tensor k = w;
    if (!previous.empty() && previous[t].defined()) {
      MCOMPRESS_CHECK(previous[t].sizes() == weights[t].sizes(), ModelError, "previous mask ", t,
                      " has shape ", shape_to_string(previous[t].sizes().vec()), ", its tensor ",
                      shape_to_string(weights[t].sizes().vec()));
      k = at::where(previous[t].to(at::kBool).reshape({-1}), w, at::full_like(w, -1.0f));
    }
    key.insert(key.end(), k.data_ptr<float>(), k.data_ptr<float>() + k.numel());
    offsets.push_back(static_cast<int64_t>(key.size()));
  }
  const int64_t n = static_cast<int64_t>(key.size());
  const int64_t remove = std::llround(sparsity * static_cast<double>(n));

  // (key, position) is a strict total order, so the removed set does not depend on the
  // selection algorithm: that is the deterministic tie-break.
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  const auto before = [&key](int64_t a, int64_t b) {
    return key[a] < key[b] || (key[a] == key[b] && a < b);
  };
  if (remove > 0 && remove < n) {
    std::nth_element(order.begin(), order.begin() + remove, order.end(), before);
  }
  std::vector<uint8_t> keep(static_cast<size_t>(n), 1);
  for (int64_t i = 0; i < std::min(remove, n); ++i) keep[order[i]] = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (key[i] < 0) keep[i] = 0;  // already pruned: stays pruned
  }

  std::vector<at::Tensor> masks;
  for (size_t t = 0; t < weights.size(); ++t) {
    const int64_t begin = offsets[t], size = offsets[t + 1] - offsets[t];
    auto m = at::from_blob(keep.data() + begin, {size}, at::kByte).to(at::kBool);
    masks.push_back(m.reshape(weights[t].sizes()).clone());
  }
  return masks;
}

at::Tensor layer_magnitude_mask(const at::Tensor& weight, double sparsity,
                                const at::Tensor& previous) {
  return global_magnitude_masks(
             {weight}, sparsity,
             previous.defined() ? std::vector<at::Tensor>{previous} : std::vector<at::Tensor>{})
      .front();
}

Density mask_density(const at::Tensor& mask) {
  return {mask.to(at::kBool).sum().item<int64_t>(), mask.numel()};
}

Density nonzero_density(const at::Tensor& tensor) {
  return {tensor.ne(0).sum().item<int64_t>(), tensor.numel()};
}

}  // namespace mcompress::prune
