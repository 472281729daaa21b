#include "mcompress/quant/codebook.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "mcompress/core/error.h"
#include "mcompress/core/trainable_network.h"
#include "mcompress/quant/tensor_quant.h"
#include "mcompress/runtime/executor.h"

namespace mcompress::quant {
namespace {

// Lloyd's k-means on sorted 1-D values from sorted starting centres: each value belongs to the
// nearest centre (ties to the lower one), each centre moves to its values' mean, until no centre
// moves. Returns the centres that kept at least one value, sorted.
std::vector<double> kmeans_1d(const std::vector<float>& sorted, std::vector<double> centres,
                              int64_t max_iterations) {
  std::vector<double> sum(centres.size());
  std::vector<int64_t> count(centres.size());
  for (int64_t it = 0; it < max_iterations; ++it) {
    std::fill(sum.begin(), sum.end(), 0.0);
    std::fill(count.begin(), count.end(), 0);
    size_t j = 0;
    for (float v : sorted) {
      while (j + 1 < centres.size() && v > 0.5 * (centres[j] + centres[j + 1])) ++j;
      sum[j] += v;
      ++count[j];
    }
    bool moved = false;
    for (size_t k = 0; k < centres.size(); ++k) {
      if (count[k] == 0) continue;  // an empty cluster keeps its centre (and is dropped below)
      const double mean = sum[k] / static_cast<double>(count[k]);
      moved = moved || mean != centres[k];
      centres[k] = mean;
    }
    std::sort(centres.begin(), centres.end());
    if (!moved) break;
  }
  // Drop the centres no value chose: their codes would never be used.
  std::vector<double> used;
  size_t j = 0;
  std::vector<bool> chosen(centres.size(), false);
  for (float v : sorted) {
    while (j + 1 < centres.size() && v > 0.5 * (centres[j] + centres[j + 1])) ++j;
    chosen[j] = true;
  }
  for (size_t k = 0; k < centres.size(); ++k) {
    if (chosen[k]) used.push_back(centres[k]);
  }
  return used;
}

// Index of the nearest of the sorted `centres` (ties to the lower one).
int64_t nearest(const std::vector<float>& centres, float v) {
  const auto upper = std::upper_bound(centres.begin(), centres.end(), v);
  if (upper == centres.begin()) return 0;
  if (upper == centres.end()) return static_cast<int64_t>(centres.size()) - 1;
  const auto lower = upper - 1;
  return (v - *lower <= *upper - v) ? lower - centres.begin() : upper - centres.begin();
}

double runtime_accuracy(const Model& model, const Dataset& data) {
  if (data.size() == 0) return -1;
  runtime::ExecutorOptions eo;
  eo.policy = runtime::KernelPolicy::kFp32;  // codebook models compute in fp32
  runtime::Executor exec(model, eo);
  return runtime::evaluate(exec, data).accuracy;
}

}  // namespace

void CodebookOptions::validate() const {
  MCOMPRESS_CHECK(bits >= 2 && bits <= 8, ConfigError, "codebook bits must be 2 to 8, got ", bits);
  MCOMPRESS_CHECK(kmeans_iterations >= 1, ConfigError,
                  "codebook kmeans_iterations must be at least 1, got ", kmeans_iterations);
  if (train.epochs > 0) train.validate();
}

QuantizedTensor share_weights(const at::Tensor& weight, int64_t bits, int64_t max_iterations) {
  MCOMPRESS_CHECK(bits >= 1 && bits <= 8, ConfigError, "codebook bits must be 1 to 8, got ", bits);
  const at::Tensor flat = weight.detach().to(at::kCPU).to(at::kFloat).contiguous().reshape({-1});
  const float* w = flat.data_ptr<float>();
  const int64_t n = flat.numel();
  const bool has_zero = (flat == 0).any().item<bool>();

  std::vector<float> sorted;
  sorted.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    if (w[i] != 0.0f || !has_zero) sorted.push_back(w[i]);
  }
  std::sort(sorted.begin(), sorted.end());
  const int64_t learned = (int64_t{1} << bits) - (has_zero ? 1 : 0);

  std::vector<float> centres;  // the learned shared values, sorted
  std::vector<float> distinct = sorted;
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  if (static_cast<int64_t>(distinct.size()) <= learned) {
    centres = distinct;  // nothing to share: every value keeps its own code
  } else {
    const double lo = sorted.front(), hi = sorted.back();
    std::vector<double> start(static_cast<size_t>(learned));
    for (int64_t k = 0; k < learned; ++k) {
      // One learned value (1 bit beside the 0.0 of pruned entries) starts in the middle.
      const double at =
          learned > 1 ? static_cast<double>(k) / static_cast<double>(learned - 1) : 0.5;
      start[static_cast<size_t>(k)] = lo + (hi - lo) * at;
    }
    for (double c : kmeans_1d(sorted, start, max_iterations))
      centres.push_back(static_cast<float>(c));
    // Two centres can round to the same float; one code is enough for them.
    centres.erase(std::unique(centres.begin(), centres.end()), centres.end());
  }

  QuantizedTensor q;
  q.encoding = Encoding::kCodebook;
  q.bits = bits;
  const int64_t offset = has_zero ? 1 : 0;  // code 0 is 0.0 when the tensor has zeros
  q.codebook = at::empty({static_cast<int64_t>(centres.size()) + offset}, at::kFloat);
  float* book = q.codebook.data_ptr<float>();
  if (has_zero) book[0] = 0.0f;
  std::copy(centres.begin(), centres.end(), book + offset);
  at::Tensor codes = at::empty({n}, at::kByte);
  uint8_t* c = codes.data_ptr<uint8_t>();
  for (int64_t i = 0; i < n; ++i) {
    c[i] = static_cast<uint8_t>(has_zero && w[i] == 0.0f ? 0 : offset + nearest(centres, w[i]));
  }
  q.values = codes.reshape(weight.sizes());
  return q;
}

void tie_weights(at::Tensor& weight, QuantizedTensor& shared) {
  torch::NoGradGuard no_grad;
  const at::Tensor codes = shared.values.reshape({-1}).to(at::kLong);
  const int64_t k = shared.codebook.numel();
  const at::Tensor flat = weight.detach().reshape({-1}).to(at::kDouble);
  const at::Tensor sums = at::zeros({k}, at::kDouble).index_add_(0, codes, flat);
  const at::Tensor counts = at::bincount(codes, {}, k).to(at::kDouble);
  const at::Tensor old = shared.codebook.to(at::kDouble);
  // An unused code and the 0.0 of pruned entries keep their value.
  const at::Tensor keep = counts.eq(0).logical_or(old.eq(0));
  shared.codebook = at::where(keep, old, sums / counts.clamp_min(1)).to(at::kFloat);
  weight.detach().copy_(shared.dequantize().reshape(weight.sizes()));
}

QuantizeReport codebook_model(Model& model, const CodebookOptions& options, const Dataset& train,
                              const Dataset& val) {
  options.validate();
  MCOMPRESS_CHECK(model.quant.empty(), ConfigError, "the model is already quantized (",
                  model.quant.mode.empty() ? "some tensors" : model.quant.mode,
                  "); codebook quantization needs an fp32 model");
  const bool finetune = options.train.epochs > 0;
  MCOMPRESS_CHECK(!finetune || train.size() > 0, DataError,
                  "codebook fine-tuning needs training data, but the training set is empty");

  QuantizeReport report;
  report.mode = "codebook";
  report.metrics["bits"] = static_cast<double>(options.bits);
  report.metrics["val_accuracy_fp32"] = runtime_accuracy(model, val);

  std::map<std::string, QuantizedTensor> shared;
  const auto int8_weights = int8_weight_names(model);
  for (const TensorInfo& info : model.tensor_infos()) {
    if (int8_weights.count(info.name) == 0) continue;
    QuantizedTensor q =
        share_weights(model.tensor(info.name), options.bits, options.kmeans_iterations);
    model.tensor(info.name).copy_(q.dequantize());
    shared.emplace(info.name, std::move(q));
  }
  report.metrics["val_accuracy_kmeans"] = runtime_accuracy(model, val);

  if (finetune) {
    TrainHooks hooks;
    hooks.after_step = [&](TrainableNetwork& net, int64_t) {
      std::map<std::string, torch::Tensor> state = net.state();
      for (auto& [name, q] : shared) tie_weights(state.at(name), q);
    };
    const TrainResult result = train_model(model, train, val, options.train, hooks);
    if (val.size() > 0 && options.train.validate_start && result.best_epoch == 0) {
      report.warnings.push_back(
          "no fine-tuning epoch beat the k-means shared values on validation; kept them");
    }
    // The weights are tied, so each cluster's value is any of its weights; read them back so
    // that the codebook and the masters agree bit for bit.
    for (auto& [name, q] : shared) {
      const at::Tensor w = model.tensor(name).reshape({-1});
      const at::Tensor codes = q.values.reshape({-1}).to(at::kLong);
      at::Tensor book = q.codebook.clone();
      book.index_copy_(0, codes, w);  // every member of a cluster holds the same value
      q.codebook = book;
      MCOMPRESS_CHECK(q.dequantize().reshape({-1}).equal(w), ModelError, "tensor '", name,
                      "': the fine-tuned weights are not tied to their codebook");
    }
    report.metrics["val_accuracy_finetuned"] = runtime_accuracy(model, val);
    report.metrics["finetune_best_epoch"] = static_cast<double>(result.best_epoch);
  }

  for (auto& [name, q] : shared) {
    char note[96];
    std::snprintf(note, sizeof(note), "%lld shared values (%lld bits)",
                  static_cast<long long>(q.codebook.numel()), static_cast<long long>(q.bits));
    report.tensors.push_back({name, "codebook", note});
    // The masters already hold codebook[codes]: set when the weights were shared, and checked
    // bit for bit after fine-tuning.
    model.quant.tensors[name] = std::move(q);
  }
  model.quant.mode = "codebook";
  return report;
}

}  // namespace mcompress::quant
