#include "mcompress/quant/quantize.h"

#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <map>
#include <optional>

#include "mcompress/core/distributed.h"
#include "mcompress/core/enum_names.h"
#include "mcompress/core/error.h"
#include "mcompress/runtime/executor.h"

namespace mcompress::quant {
namespace {

void apply_half(Model& model, const QuantizeOptions& o, QuantizeReport& report) {
  const Encoding wanted = o.mode == QuantMode::kFp16 ? Encoding::kFp16 : Encoding::kBf16;
  for (const auto& info : model.tensor_infos()) {
    const auto& w = model.tensor(info.name);
    Encoding enc = wanted;
    std::string note;
    auto check = check_half_range(w, enc);
    if (!check.safe() && wanted == Encoding::kFp16 && o.half_fallback_bf16) {
      note = "fp16 unsafe (" + check.describe() + "): bf16";
      enc = Encoding::kBf16;
      check = check_half_range(w, enc);
    }
    if (!check.safe()) {
      note = "kept fp32: " + check.describe();
      report.warnings.push_back(info.name + ": " + note);
      report.tensors.push_back({info.name, "fp32", note});
      continue;
    }
    auto q = to_half(w, enc);
    model.tensor(info.name).copy_(q.dequantize());
    model.quant.tensors[info.name] = std::move(q);
    report.tensors.push_back({info.name, to_string(enc), note});
  }
}

void apply_int8_weights(Model& model, const QuantizeOptions& o, bool linear_only,
                        QuantizeReport& report) {
  const auto int8_weights = int8_weight_names(model, linear_only);
  for (const auto& info : model.tensor_infos()) {
    if (int8_weights.count(info.name) == 0) continue;
    auto q = quantize_weight_int8(model.tensor(info.name), o.granularity);
    model.tensor(info.name).copy_(q.dequantize());
    model.quant.tensors[info.name] = std::move(q);
    report.tensors.push_back({info.name, "int8",
                              o.granularity == Granularity::kPerChannel ? "per-channel symmetric"
                                                                        : "per-tensor symmetric"});
  }
}

// Runs the accuracy guard and records its decisions in the report.
void apply_guard(Model& model, const Model& fp32_original, const Dataset& val, double budget,
                 QuantizeReport& report) {
  const auto g = apply_accuracy_guard(model, fp32_original, val, budget);
  report.max_accuracy_drop = budget;
  report.val_accuracy_fp32 = g.fp32_accuracy;
  report.val_accuracy_int8_all = g.accuracy_before;
  report.val_accuracy_quantized = g.accuracy_after;
  report.accuracy_budget_met = g.budget_met;
  report.kept_fp32 = g.kept_fp32;
  report.sensitivity = g.sensitivity;
  for (const auto& name : g.kept_fp32) {
    std::string note = "kept fp32 by the accuracy guard";
    for (const auto& s : g.sensitivity) {
      if (s.tensor != name) continue;
      char buf[96];
      std::snprintf(buf, sizeof buf, " (int8 alone costs %.2f points)", s.drop_points);
      note += buf;
    }
    for (auto& d : report.tensors) {
      if (d.tensor == name) d = {name, "fp32", note};
    }
  }
  if (!g.budget_met) {
    char buf[192];
    std::snprintf(buf, sizeof buf,
                  "accuracy guard: the drop is still %.2f points after keeping %zu layers in fp32, "
                  "above the budget of %.2f",
                  g.drop_after_points(), g.kept_fp32.size(), budget);
    report.warnings.emplace_back(buf);
  }
}

}  // namespace

TrainOptions quant_fine_tuning() {
  TrainOptions t;
  t.epochs = 2;
  t.lr = 1e-4;
  t.optimizer = OptimizerKind::kAdam;
  t.schedule = LrSchedule::kCosine;
  t.validate_start = true;
  return t;
}

constexpr std::array<EnumName<QuantMode>, 4> kQuantModes = {
    {{QuantMode::kFp16, "fp16"},
     {QuantMode::kBf16, "bf16"},
     {QuantMode::kInt8Dynamic, "int8-dynamic"},
     {QuantMode::kInt8Static, "int8-static"}}};

std::string to_string(QuantMode mode) { return enum_to_string(kQuantModes, mode); }
QuantMode parse_quant_mode(const std::string& name) {
  return parse_enum<ConfigError>(kQuantModes, name, "quantization mode");
}

void QuantizeOptions::validate() const {
  MCOMPRESS_CHECK(calib_batches >= 1, ConfigError, "calib_batches must be >= 1, got ",
                  calib_batches);
  MCOMPRESS_CHECK(calib_batch_size >= 1, ConfigError, "calib_batch_size must be >= 1, got ",
                  calib_batch_size);
  MCOMPRESS_CHECK(!std::isnan(max_accuracy_drop) && !std::isinf(max_accuracy_drop), ConfigError,
                  "max_accuracy_drop must be a number of accuracy points (< 0 = off), got ",
                  max_accuracy_drop);
  observer.validate();
}

namespace {

// Data parallel calibration: rank r observes batches r, r + W, r + 2W, ... and the observers
// are merged across ranks (Observer::reduce_across_ranks). Histogram observers first agree on
// the global min/max of every key (a min/max pass over the same batches), so that every rank
// bins on one grid and the merged histogram is exactly the histogram of all batches.
std::map<std::string, Observer> calibrate_sharded(runtime::Executor& exec, const at::Tensor& x,
                                                  const ObserverOptions& options,
                                                  int64_t batch_size, Distributed& dist) {
  // Every rank lists every key (a rank may get no batch at all), in the map's order.
  std::map<std::string, std::pair<double, double>> ranges;
  exec.run_observed(x.slice(0, 0, 1), [&](const std::string& key, const at::Tensor&) {
    ranges.emplace(key, std::make_pair(0.0, 0.0));
  });
  auto run_my_batches = [&](std::map<std::string, Observer>& observers) {
    for (int64_t begin = batch_size * dist.rank(); begin < x.size(0);
         begin += batch_size * dist.world_size()) {
      exec.run_observed(x.slice(0, begin, std::min(x.size(0), begin + batch_size)),
                        [&](const std::string& key, const at::Tensor& value) {
                          observers.at(key).observe(value);
                        });
    }
    for (auto& [key, obs] : observers) obs.reduce_across_ranks();
  };
  const bool histogram = options.kind == ObserverKind::kPercentile ||
                         options.kind == ObserverKind::kEntropy ||
                         options.kind == ObserverKind::kMse;
  if (histogram) {
    std::map<std::string, Observer> minmax;
    for (const auto& [key, range] : ranges) minmax.emplace(key, Observer(ObserverOptions{}));
    run_my_batches(minmax);
    for (auto& [key, range] : ranges) range = minmax.at(key).observed_range();
  }
  std::map<std::string, Observer> observers;
  for (const auto& [key, range] : ranges) {
    observers.emplace(key,
                      histogram ? Observer(options, range.first, range.second) : Observer(options));
  }
  run_my_batches(observers);
  return observers;
}

}  // namespace

std::map<std::string, ActivationQParams> calibrate(const Model& model, const Dataset& data,
                                                   const ObserverOptions& observer, int64_t batches,
                                                   int64_t batch_size) {
  check_dataset(data, model.input_shape(), model.num_classes(), "calibration");
  runtime::ExecutorOptions eo;
  eo.policy = runtime::KernelPolicy::kFp32;
  runtime::Executor exec(model, eo);
  std::map<std::string, Observer> observers;
  const int64_t n = std::min(data.size(), batches * batch_size);
  Distributed& dist = distributed();
  if (!dist.active()) {
    for (int64_t begin = 0; begin < n; begin += batch_size) {
      exec.run_observed(data.x.slice(0, begin, std::min(n, begin + batch_size)),
                        [&](const std::string& key, const at::Tensor& value) {
                          auto it = observers.find(key);
                          if (it == observers.end())
                            it = observers.emplace(key, Observer(observer)).first;
                          it->second.observe(value);
                        });
    }
  } else {
    observers = calibrate_sharded(exec, data.x.slice(0, 0, n), observer, batch_size, dist);
  }
  std::map<std::string, ActivationQParams> out;
  for (const auto& [key, obs] : observers) {
    out[key] = obs.qparams();
    out[key].observer = to_string(observer.kind);
  }
  return out;
}

QuantizeReport quantize_model(Model& model, const QuantizeOptions& o, const Dataset& calib,
                              const Dataset& val) {
  o.validate();
  MCOMPRESS_CHECK(model.quant.empty(), ConfigError, "the model is already quantized (",
                  model.quant.mode, "); quantize its fp32 original instead");
  QuantizeReport report;
  report.mode = to_string(o.mode);
  const bool int8 = o.mode == QuantMode::kInt8Dynamic || o.mode == QuantMode::kInt8Static;
  std::optional<Model> fp32_original;  // the guard's reference
  if (o.max_accuracy_drop >= 0) {
    if (int8) {
      MCOMPRESS_CHECK(val.size() > 0, DataError,
                      "max_accuracy_drop needs a validation set, but it is empty");
      fp32_original = model.clone();
    } else {
      report.warnings.push_back("max_accuracy_drop applies to int8 modes; ignored for " +
                                report.mode);
    }
  }
  switch (o.mode) {
    case QuantMode::kFp16:
    case QuantMode::kBf16:
      apply_half(model, o, report);
      model.quant.mode = report.mode;
      break;
    case QuantMode::kInt8Dynamic:
      apply_int8_weights(model, o, /*linear_only=*/true, report);
      model.quant.mode = report.mode;
      break;
    case QuantMode::kInt8Static: {
      MCOMPRESS_CHECK(calib.size() > 0, DataError, "int8-static needs calibration data, but '",
                      calib.source, "' is empty");
      apply_int8_weights(model, o, /*linear_only=*/false, report);
      model.quant.mode = report.mode;
      // Ranges are observed on the model with its int8-rounded weights, as it will run.
      if (!o.compare_observers) {
        model.quant.activations =
            calibrate(model, calib, o.observer, o.calib_batches, o.calib_batch_size);
        report.observer = to_string(o.observer.kind);
        break;
      }
      MCOMPRESS_CHECK(val.size() > 0, DataError,
                      "observer: compare needs a validation set, but it is empty");
      double best = -1;
      std::map<std::string, ActivationQParams> best_ranges;
      for (auto kind : {ObserverKind::kMinMax, ObserverKind::kMovingAverageMinMax,
                        ObserverKind::kPercentile, ObserverKind::kEntropy, ObserverKind::kMse}) {
        ObserverOptions obs = o.observer;
        obs.kind = kind;
        model.quant.activations = calibrate(model, calib, obs, o.calib_batches, o.calib_batch_size);
        const double acc = int8_accuracy(model, val);
        report.comparison.push_back({to_string(kind), acc});
        if (acc > best) {
          best = acc;
          best_ranges = model.quant.activations;
          report.observer = to_string(kind);
        }
      }
      model.quant.activations = std::move(best_ranges);
      break;
    }
  }
  if (fp32_original) apply_guard(model, *fp32_original, val, o.max_accuracy_drop, report);
  return report;
}

std::string QuantizeReport::to_json() const {
  nlohmann::json doc;
  doc["stage"] = "quantize";
  doc["options"] = {
      {"mode", mode}, {"observer", observer}, {"max_accuracy_drop", max_accuracy_drop}};
  auto& t = doc["tensors"] = nlohmann::json::array();
  for (const auto& d : tensors)
    t.push_back({{"tensor", d.tensor}, {"encoding", d.encoding}, {"note", d.note}});
  auto& c = doc["observer_comparison"] = nlohmann::json::array();
  for (const auto& s : comparison)
    c.push_back({{"observer", s.observer}, {"val_accuracy", s.val_accuracy}});
  doc["warnings"] = warnings;
  if (!metrics.empty()) doc["metrics"] = metrics;
  if (max_accuracy_drop >= 0) {
    auto& g = doc["accuracy_guard"];
    g["max_accuracy_drop"] = max_accuracy_drop;
    g["val_accuracy_fp32"] = val_accuracy_fp32;
    g["val_accuracy_int8_all"] = val_accuracy_int8_all;
    g["val_accuracy_quantized"] = val_accuracy_quantized;
    g["budget_met"] = accuracy_budget_met;
    g["kept_fp32"] = kept_fp32;
    auto& ss = g["sensitivity"] = nlohmann::json::array();
    for (const auto& s : sensitivity) {
      ss.push_back(
          {{"tensor", s.tensor}, {"val_accuracy", s.accuracy}, {"drop_points", s.drop_points}});
    }
  }
  return doc.dump();
}

}  // namespace mcompress::quant
