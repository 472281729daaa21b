#include "mcompress/quant/sensitivity.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "mcompress/core/error.h"
#include "mcompress/runtime/executor.h"

namespace mcompress::quant {
namespace {

// Accuracies are fractions of a finite set; this only absorbs the rounding of (a − b) · 100.
constexpr double kBudgetSlackPoints = 1e-9;

double accuracy_with(const Model& model, const Dataset& val, runtime::KernelPolicy policy) {
  runtime::ExecutorOptions eo;
  eo.policy = policy;
  runtime::Executor exec(model, eo);
  return runtime::evaluate(exec, val).accuracy;
}

double fp32_accuracy(const Model& model, const Dataset& val) {
  return accuracy_with(model, val, runtime::KernelPolicy::kFp32);
}

std::vector<std::string> int8_tensors(const Model& model) {
  std::vector<std::string> names;
  for (const auto& [name, q] : model.quant.tensors) {
    if (q.encoding == Encoding::kInt8) names.push_back(name);
  }
  return names;
}

void check_inputs(const Model& fp32_model, const Model& quantized, const Dataset& val,
                  const char* what) {
  MCOMPRESS_CHECK(val.size() > 0, DataError, what, ": the validation set '", val.source,
                  "' is empty");
  MCOMPRESS_CHECK(int8_tensors(fp32_model).empty() && fp32_model.quant.activations.empty(),
                  ModelError, what, ": the reference model must be the fp32 original, but it is ",
                  fp32_model.quant.mode.empty() ? "quantized" : fp32_model.quant.mode);
  for (const auto& name : int8_tensors(quantized)) {
    MCOMPRESS_CHECK(fp32_model.has_tensor(name), ModelError, what,
                    ": the fp32 model has no tensor '", name, "' of the quantized model");
    MCOMPRESS_CHECK(fp32_model.tensor(name).sizes() == quantized.tensor(name).sizes(), ModelError,
                    what, ": tensor '", name, "' has shape ",
                    shape_to_string(fp32_model.tensor(name).sizes().vec()),
                    " in the fp32 model but ",
                    shape_to_string(quantized.tensor(name).sizes().vec()), " in the quantized one");
  }
}

// Keeps `name` in fp32: drops its int8 encoding and restores the fp32 master values.
void keep_fp32(Model& model, const Model& fp32_model, const std::string& name) {
  model.quant.tensors.erase(name);
  model.tensor(name).copy_(fp32_model.tensor(name));
}

double drop_points(double fp32, double acc) { return (fp32 - acc) * 100.0; }

std::vector<LayerSensitivity> rank(const Model& fp32_model, const Model& quantized,
                                   const Dataset& val, double fp32_acc) {
  const auto names = int8_tensors(quantized);
  // Everything int8 moved back to fp32; each probe then re-adds one tensor's int8 form.
  Model base = quantized.clone();
  for (const auto& name : names) keep_fp32(base, fp32_model, name);
  std::vector<LayerSensitivity> out;
  out.reserve(names.size());
  for (const auto& name : names) {
    Model probe = base.clone();
    probe.quant.tensors[name] = quantized.quant.tensors.at(name);
    probe.tensor(name).copy_(quantized.tensor(name));
    const double acc = int8_accuracy(probe, val);
    out.push_back({name, acc, drop_points(fp32_acc, acc)});
  }
  std::stable_sort(
      out.begin(), out.end(), [](const LayerSensitivity& a, const LayerSensitivity& b) {
        return a.drop_points > b.drop_points;  // names are already in order within ties
      });
  return out;
}

}  // namespace

double int8_accuracy(const Model& model, const Dataset& val) {
  return accuracy_with(model, val, runtime::KernelPolicy::kInt8);
}

std::vector<LayerSensitivity> sensitivity(const Model& fp32_model, const Model& quantized_model,
                                          const Dataset& val) {
  check_inputs(fp32_model, quantized_model, val, "sensitivity");
  if (int8_tensors(quantized_model).empty()) return {};
  return rank(fp32_model, quantized_model, val, fp32_accuracy(fp32_model, val));
}

AccuracyGuardResult apply_accuracy_guard(Model& quantized, const Model& fp32_model,
                                         const Dataset& val, double max_drop_points) {
  MCOMPRESS_CHECK(max_drop_points >= 0 && std::isfinite(max_drop_points), ConfigError,
                  "max_accuracy_drop must be a finite number of points >= 0, got ",
                  max_drop_points);
  check_inputs(fp32_model, quantized, val, "accuracy guard");
  AccuracyGuardResult r;
  r.max_drop_points = max_drop_points;
  r.fp32_accuracy = fp32_accuracy(fp32_model, val);
  r.accuracy_before = int8_accuracy(quantized, val);
  r.accuracy_after = r.accuracy_before;
  auto within = [&](double acc) {
    return drop_points(r.fp32_accuracy, acc) <= max_drop_points + kBudgetSlackPoints;
  };
  if (!within(r.accuracy_after) && !int8_tensors(quantized).empty()) {
    r.sensitivity = rank(fp32_model, quantized, val, r.fp32_accuracy);
    for (const auto& s : r.sensitivity) {
      keep_fp32(quantized, fp32_model, s.tensor);
      r.kept_fp32.push_back(s.tensor);
      r.accuracy_after = int8_accuracy(quantized, val);
      if (within(r.accuracy_after)) break;
    }
  }
  r.budget_met = within(r.accuracy_after);
  return r;
}

}  // namespace mcompress::quant
