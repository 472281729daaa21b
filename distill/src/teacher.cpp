#include "mcompress/distill/teacher.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>

#include "mcompress/core/error.h"

namespace mcompress::distill {
namespace {

runtime::ExecutorOptions teacher_executor_options() {
  runtime::ExecutorOptions o;
  // Not kAuto: its per-step choice depends on timings, and the teacher's numbers must not.
  o.policy = runtime::KernelPolicy::kInt8;
  return o;
}

int64_t bytes_of(int64_t rows, const std::vector<int64_t>& shape) {
  int64_t n = rows * static_cast<int64_t>(sizeof(float));
  for (auto d : shape) n *= d;
  return n;
}

}  // namespace

std::vector<ActivationInfo> activations(const Model& model) {
  runtime::ExecutorOptions eo;
  eo.policy = runtime::KernelPolicy::kFp32;
  runtime::Executor exec(model, eo);
  std::vector<int64_t> shape{1};
  for (auto d : model.input_shape()) shape.push_back(d);
  std::vector<ActivationInfo> out;
  exec.run_observed(at::zeros(shape), [&](const std::string& key, const at::Tensor& t) {
    out.push_back({key, t.sizes().slice(1).vec()});
  });
  return out;
}

std::vector<int64_t> activation_shape(const Model& model, const std::string& key,
                                      const std::string& role) {
  std::string accepted;
  for (const auto& a : activations(model)) {
    if (a.key == key) return a.shape;
    accepted += (accepted.empty() ? "" : ", ") + a.key;
  }
  throw ConfigError("hint_" + role + ": " + role + " '" + model.name() + "' has no activation '" +
                    key + "'; accepted: " + accepted);
}

TeacherOutputs::TeacherOutputs(const Model& teacher, const Dataset& data,
                               const TeacherOutputOptions& options)
    : exec_(teacher, teacher_executor_options()), data_(data), options_(options) {
  MCOMPRESS_CHECK(options.batch_size >= 1, ConfigError, "teacher batch size must be >= 1, got ",
                  options.batch_size);
  MCOMPRESS_CHECK(options.cache_limit_bytes >= 0, ConfigError,
                  "teacher cache limit must be >= 0, got ", options.cache_limit_bytes);
  check_dataset(data, teacher.input_shape(), teacher.num_classes(), "teacher input");
  if (!options.hint_key.empty()) {
    feature_shape_ = activation_shape(teacher, options.hint_key, "teacher");
  }
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t n = data.size();
  const int64_t logit_bytes = bytes_of(n, {teacher.num_classes()});
  if (logit_bytes <= options.cache_limit_bytes) {
    cached_logits_ = over_data([this](const at::Tensor& x) { return run_logits(x); });
    if (!options.hint_key.empty() &&
        logit_bytes + bytes_of(n, feature_shape_) <= options.cache_limit_bytes) {
      cached_features_ = over_data([this](const at::Tensor& x) { return run_features(x); });
    }
  }
  cache_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

template <typename Fn>
at::Tensor TeacherOutputs::over_data(Fn fn) const {
  std::vector<at::Tensor> parts;
  for (int64_t begin = 0; begin < data_.size(); begin += options_.batch_size) {
    const int64_t end = std::min(begin + options_.batch_size, data_.size());
    parts.push_back(fn(data_.x.slice(0, begin, end)));
  }
  return at::cat(parts);
}

at::Tensor TeacherOutputs::run_logits(const at::Tensor& x) const { return exec_.run(x); }

at::Tensor TeacherOutputs::run_features(const at::Tensor& x) const {
  at::Tensor captured;
  exec_.run_observed(x, [&](const std::string& key, const at::Tensor& t) {
    // Cloned: a residual block adds into its "i.conv2" activation in place afterwards.
    if (key == options_.hint_key) captured = t.clone();
  });
  return captured;
}

at::Tensor TeacherOutputs::logits(const at::Tensor& rows) const {
  if (logits_cached()) return cached_logits_.index_select(0, rows);
  return run_logits(data_.x.index_select(0, rows));
}

at::Tensor TeacherOutputs::features(const at::Tensor& rows) const {
  MCOMPRESS_CHECK(!options_.hint_key.empty(), ModelError,
                  "teacher features requested without a hint activation key");
  if (features_cached()) return cached_features_.index_select(0, rows);
  return run_features(data_.x.index_select(0, rows));
}

int64_t TeacherOutputs::cache_bytes() const {
  int64_t bytes = 0;
  for (const auto* t : {&cached_logits_, &cached_features_}) {
    if (t->defined()) bytes += t->numel() * t->element_size();
  }
  return bytes;
}

}  // namespace mcompress::distill
