#pragma once
// The teacher's side of distillation: its outputs for rows of the training set, computed once
// and cached when they fit in a memory budget (the data has no augmentation, so the teacher
// would only repeat itself every epoch), else computed per batch.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "mcompress/core/dataset.h"
#include "mcompress/core/model.h"
#include "mcompress/runtime/executor.h"

namespace mcompress::distill {

struct TeacherOutputOptions {
  /// Activation key of a hint ("" = logits only); the keys are the runtime's
  /// (runtime::Executor::run_observed), e.g. "13" for convnet's last conv-bn-relu group.
  std::string hint_key;
  /// Memory for cached outputs; logits are cached first, then the hint activation if both fit.
  int64_t cache_limit_bytes = 256LL << 20;
  /// Batch size of the teacher runs that fill the cache.
  int64_t batch_size = 256;
};

/// Example:
///   TeacherOutputs teacher(teacher_model, train_data, {});
///   at::Tensor z_t = teacher.logits(rows);   // rows: int64 indices into train_data
///
/// Logits come from the deployable runtime with kernel policy int8 (runtime::Executor), so a
/// quantized teacher runs its int8 kernels and a pruned one its zeroed weights, with no
/// gradient and the same numbers on every run. The hint activation comes from the runtime's
/// fp32 form of the plan (Executor::run_observed), batchnorm folded as deployed.
class TeacherOutputs {
 public:
  /// ConfigError naming the accepted keys for an unknown hint_key; ModelError when the data's
  /// examples do not fit the teacher.
  TeacherOutputs(const Model& teacher, const Dataset& data, const TeacherOutputOptions& options);

  /// Teacher logits [rows, classes] for rows of the data set.
  at::Tensor logits(const at::Tensor& rows) const;
  /// The hint activation [rows, ...] for rows of the data set; ModelError without a hint_key.
  at::Tensor features(const at::Tensor& rows) const;

  bool logits_cached() const { return cached_logits_.defined(); }
  bool features_cached() const { return cached_features_.defined(); }
  /// Bytes held by the caches.
  int64_t cache_bytes() const;
  /// Shape of one example's hint activation (empty without a hint_key).
  const std::vector<int64_t>& feature_shape() const { return feature_shape_; }
  /// Wall time spent filling the caches.
  double cache_seconds() const { return cache_seconds_; }

 private:
  at::Tensor run_logits(const at::Tensor& x) const;
  at::Tensor run_features(const at::Tensor& x) const;
  // Runs `fn` over the whole data set in batches and concatenates the results.
  template <typename Fn>
  at::Tensor over_data(Fn fn) const;

  runtime::Executor exec_;
  Dataset data_;
  TeacherOutputOptions options_;
  std::vector<int64_t> feature_shape_;
  at::Tensor cached_logits_, cached_features_;
  double cache_seconds_ = 0;
};

/// An activation a hint may name: its key (network.h) and the shape of one example's value.
struct ActivationInfo {
  std::string key;
  std::vector<int64_t> shape;
};
/// The activations `model` exposes, in forward order.
std::vector<ActivationInfo> activations(const Model& model);
/// The shape of one example's activation `key`. ConfigError for an unknown key, naming the
/// option ("hint_<role>"), the model and the accepted keys; `role` is "teacher" or "student".
std::vector<int64_t> activation_shape(const Model& model, const std::string& key,
                                      const std::string& role);

}  // namespace mcompress::distill
