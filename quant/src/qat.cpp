#include "mcompress/quant/qat.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <vector>

#include "mcompress/core/distributed.h"
#include "mcompress/core/error.h"
#include "mcompress/runtime/executor.h"

namespace mcompress::quant {
namespace {

constexpr const char* kQatObserver = "qat-moving-average";
constexpr int64_t kActQMin = 0, kActQMax = 255;  // quint8 activations
constexpr int64_t kWeightQMax = 127;             // symmetric int8 weights: [-127, 127]

// The observers' qparams rule (observer.h), applied to a moving-average range.
void set_qparams(QatFakeQuant::Range& r) {
  const ActivationQParams q = affine_qparams(r.lo, r.hi);
  r.scale = q.scale;
  r.zero_point = q.zero_point;
}

std::string granularity_note(Granularity g) {
  return g == Granularity::kPerChannel ? "per-channel symmetric, QAT" : "per-tensor symmetric, QAT";
}

}  // namespace

void QatOptions::validate() const {
  train.validate();
  observer.validate();
  MCOMPRESS_CHECK(freeze_observers_epoch >= -1, ConfigError,
                  "freeze_observers_epoch must be >= 0, or -1 for never, got ",
                  freeze_observers_epoch);
  MCOMPRESS_CHECK(calib_batches >= 1, ConfigError, "calib_batches must be >= 1, got ",
                  calib_batches);
  MCOMPRESS_CHECK(calib_batch_size >= 1, ConfigError, "calib_batch_size must be >= 1, got ",
                  calib_batch_size);
}

torch::Tensor fake_quantize_weight(const torch::Tensor& w, Granularity granularity) {
  MCOMPRESS_CHECK(w.defined() && w.dim() >= 1 && w.numel() > 0, ModelError,
                  "fake_quantize_weight: expected a non-empty weight");
  if (granularity == Granularity::kPerChannel) {
    torch::Tensor scale;
    {
      torch::NoGradGuard no_grad;
      const auto amax = w.detach().reshape({w.size(0), -1}).abs().amax(1);
      scale = amax / static_cast<float>(kWeightQMax);
      scale = torch::where(amax == 0, torch::ones_like(scale), scale).contiguous();
    }
    const auto zero_point = torch::zeros({w.size(0)}, torch::dtype(torch::kInt));
    return torch::fake_quantize_per_channel_affine(w, scale, zero_point, /*axis=*/0, -kWeightQMax,
                                                   kWeightQMax);
  }
  double amax = 0;
  {
    torch::NoGradGuard no_grad;
    amax = w.detach().abs().max().item<double>();
  }
  // The float32 scale quantize_weight_int8 would store.
  const double scale = amax > 0 ? static_cast<double>(static_cast<float>(amax) / 127.0f) : 1.0;
  return torch::fake_quantize_per_tensor_affine(w, scale, 0, -kWeightQMax, kWeightQMax);
}

QatFakeQuant::QatFakeQuant(Granularity granularity, double averaging_constant)
    : granularity_(granularity), averaging_constant_(averaging_constant) {
  MCOMPRESS_CHECK(averaging_constant > 0 && averaging_constant <= 1, ConfigError,
                  "averaging_constant must be in (0, 1], got ", averaging_constant);
}

void QatFakeQuant::seed(const std::map<std::string, ActivationQParams>& qparams) {
  for (const auto& [key, q] : qparams) {
    Range r;
    // The range the qparams represent: codes 0 and 255.
    r.lo = static_cast<double>(kActQMin - q.zero_point) * q.scale;
    r.hi = static_cast<double>(kActQMax - q.zero_point) * q.scale;
    set_qparams(r);
    ranges_[key] = r;
  }
}

ForwardHooks QatFakeQuant::hooks(const TrainableNetwork& net) {
  ForwardHooks h;
  const Granularity g = granularity_;
  h.weight = [g](const std::string&, const torch::Tensor& w) { return fake_quantize_weight(w, g); };
  h.activation = [this, &net](const std::string& key, const torch::Tensor& x) {
    return activation(net, key, x);
  };
  return h;
}

torch::Tensor QatFakeQuant::activation(const TrainableNetwork& net, const std::string& key,
                                       const torch::Tensor& x) {
  auto it = ranges_.find(key);
  const bool update = net.is_training() && !frozen_;
  if (it == ranges_.end() || update) {
    double bmin = 0, bmax = 0;
    {
      torch::NoGradGuard no_grad;
      const auto [mn, mx] = torch::aminmax(x.detach());
      bmin = mn.item<double>();
      bmax = mx.item<double>();
    }
    if (!std::isfinite(bmin) || !std::isfinite(bmax)) {
      // Leave the range alone; the training loop reports the non-finite loss.
      if (it == ranges_.end()) return x;
    } else if (it == ranges_.end()) {
      Range r;  // first batch sets the range, as in MovingAverageMinMaxObserver
      r.lo = bmin;
      r.hi = bmax;
      set_qparams(r);
      it = ranges_.emplace(key, r).first;
    } else {
      Range& r = it->second;
      r.lo += averaging_constant_ * (bmin - r.lo);
      r.hi += averaging_constant_ * (bmax - r.hi);
      set_qparams(r);
    }
  }
  // Straight-through estimator: gradient 1 inside the range, 0 where values are clipped.
  return torch::fake_quantize_per_tensor_affine(x, it->second.scale, it->second.zero_point,
                                                kActQMin, kActQMax);
}

void QatFakeQuant::average_across_ranks() {
  Distributed& dist = distributed();
  if (!dist.active()) return;
  std::vector<std::string> keys;
  for (const auto& [key, r] : ranges_) keys.push_back(key);
  std::sort(keys.begin(), keys.end());  // unordered_map order differs between processes
  auto count = torch::tensor({static_cast<int64_t>(keys.size())}, torch::kLong);
  auto fewest = count.clone();
  dist.all_reduce_max({count}, "QAT range keys");
  dist.all_reduce_min({fewest}, "QAT range keys");
  MCOMPRESS_CHECK(count.item<int64_t>() == fewest.item<int64_t>(), ModelError, "rank ", dist.rank(),
                  ": QAT ranges of ", keys.size(), " activations, but another rank has ",
                  count.item<int64_t>());
  auto bounds = torch::empty({static_cast<int64_t>(keys.size()), 2}, torch::kDouble);
  for (size_t i = 0; i < keys.size(); ++i) {
    bounds[static_cast<int64_t>(i)][0] = ranges_.at(keys[i]).lo;
    bounds[static_cast<int64_t>(i)][1] = ranges_.at(keys[i]).hi;
  }
  dist.all_reduce_sum({bounds}, "QAT activation ranges");
  bounds.div_(dist.world_size());
  for (size_t i = 0; i < keys.size(); ++i) {
    Range& r = ranges_.at(keys[i]);
    r.lo = bounds[static_cast<int64_t>(i)][0].item<double>();
    r.hi = bounds[static_cast<int64_t>(i)][1].item<double>();
    set_qparams(r);
  }
}

std::map<std::string, ActivationQParams> QatFakeQuant::qparams() const {
  std::map<std::string, ActivationQParams> out;
  for (const auto& [key, r] : ranges_) {
    ActivationQParams q;
    q.scale = r.scale;
    q.zero_point = r.zero_point;
    q.observer = kQatObserver;
    out[key] = q;
  }
  return out;
}

QuantizeReport qat_model(Model& model, const QatOptions& o, const Dataset& train_data,
                         const Dataset& val) {
  o.validate();
  MCOMPRESS_CHECK(model.quant.empty(), ConfigError, "the model is already quantized (",
                  model.quant.mode, "); run QAT on its fp32 original instead");
  check_dataset(train_data, model.input_shape(), model.num_classes(), "QAT training");
  if (val.size() > 0) {
    check_dataset(val, model.input_shape(), model.num_classes(), "QAT validation");
  }

  QuantizeReport report;
  report.mode = "qat";
  report.observer = kQatObserver;

  // (a) Start the activation ranges from a calibration of the fp32 model, so that fake
  // quantization does not begin from the first training batch alone.
  QatFakeQuant fake_quant(o.granularity, o.observer.averaging_constant);
  fake_quant.seed(calibrate(model, train_data, o.observer, o.calib_batches, o.calib_batch_size));
  fake_quant.set_frozen(o.freeze_observers_epoch == 0);

  // (b) Fine-tune through fake quantization. Batchnorm stays unfolded here, while the runtime
  // folds it into the conv weight and quantizes the folded weight. Per channel that is the
  // same grid (scaling channel c by s_c scales its symmetric int8 grid by |s_c|); per tensor
  // it is an approximation. The activation ranges are exactly those the runtime sees.
  const auto net = make_network(model);
  net->set_hooks(fake_quant.hooks(*net));
  struct ClearHooks {
    TrainableNetwork& net;
    ~ClearHooks() { net.clear_hooks(); }
  } clear_hooks{*net};
  // Ranges as each epoch left them, so that the ranges match the weights train() keeps
  // (restore_best may return to an earlier epoch's weights).
  std::map<int64_t, QatFakeQuant::Ranges> ranges_after;
  ranges_after[0] = fake_quant.ranges();  // epoch 0: the calibrated start (validate_start)
  TrainHooks hooks;
  hooks.after_epoch = [&](TrainableNetwork&, int64_t epoch) {
    fake_quant.average_across_ranks();
    ranges_after[epoch] = fake_quant.ranges();
    if (o.freeze_observers_epoch >= 0 && epoch >= o.freeze_observers_epoch) {
      fake_quant.set_frozen(true);
    }
  };
  const TrainResult result = train(*net, train_data, val, o.train, hooks);
  if (auto it = ranges_after.find(result.best_epoch); it != ranges_after.end()) {
    fake_quant.set_ranges(it->second);
  }
  if (val.size() > 0 && o.train.restore_best && result.best_epoch == 0) {
    report.warnings.push_back(
        "no QAT epoch beat the calibrated starting point on validation; kept the starting point");
  }
  net->clear_hooks();
  net->store(model);

  // (c) Convert: the int8-static form quantize_model produces, with the QAT ranges.
  const auto int8_weights = int8_weight_names(model);
  for (const auto& info : model.tensor_infos()) {
    if (int8_weights.count(info.name) == 0) continue;
    auto q = quantize_weight_int8(model.tensor(info.name), o.granularity);
    model.tensor(info.name).copy_(q.dequantize());
    model.quant.tensors[info.name] = std::move(q);
    report.tensors.push_back({info.name, "int8", granularity_note(o.granularity)});
  }
  model.quant.mode = to_string(QuantMode::kInt8Static);
  model.quant.activations = fake_quant.qparams();

  // Every key the runtime asks for must have qparams; the hooks see the same keys, so this
  // only fills gaps (e.g. a key reached by no training batch) by calibrating the final model.
  std::vector<std::string> missing;
  {
    runtime::ExecutorOptions eo;
    eo.policy = runtime::KernelPolicy::kFp32;
    runtime::Executor exec(model, eo);
    exec.run_observed(train_data.x.slice(0, 0, 1), [&](const std::string& key, const at::Tensor&) {
      if (model.quant.activations.count(key) == 0) missing.push_back(key);
    });
  }
  if (!missing.empty()) {
    const auto calibrated =
        calibrate(model, train_data, o.observer, o.calib_batches, o.calib_batch_size);
    std::string list;
    for (const auto& key : missing) {
      model.quant.activations[key] = calibrated.at(key);
      list += (list.empty() ? "" : ", ") + key;
    }
    report.warnings.push_back("activations without QAT ranges, calibrated with " +
                              to_string(o.observer.kind) + ": " + list);
  }
  return report;
}

}  // namespace mcompress::quant
