#pragma once
// The distillation stage: trains a student on the shared training loop with the loss
// α·T²·KL(teacher ‖ student) + (1 − α)·CE (+ β·hint), the teacher run by the runtime.

#include <cstdint>
#include <string>

#include "mcompress/core/dataset.h"
#include "mcompress/core/model.h"
#include "mcompress/core/train.h"

namespace mcompress::distill {

/// Example: DistillOptions o; o.temperature = 2; o.alpha = 0.5; o.train.epochs = 50;
/// docs/distillation.md explains the defaults and what was measured with them.
struct DistillOptions {
  /// The student's training run; the defaults of `mcompress train` (10 epochs, Adam 1e-3,
  /// cosine, batch 128), so that a distilled student and one trained alone differ only in
  /// the loss.
  TrainOptions train;
  /// T > 0 softens both distributions; α in [0, 1] weighs the soft-target term. T = 1 and
  /// α = 0.5 gained over training alone in every long-enough run measured here, where T ≥ 3
  /// lost accuracy (docs/distillation.md).
  double temperature = 1.0;
  double alpha = 0.5;
  /// Optional FitNets hint: teacher and student activation keys (network.h), both or neither,
  /// and the weight of the hint term (> 0 with keys, 0 without).
  std::string hint_teacher, hint_student;
  double beta = 0.0;
  /// Memory for the cached teacher outputs over the training set (MiB); above it the teacher
  /// runs on every batch instead.
  int64_t cache_limit_mb = 256;
  int64_t teacher_batch_size = 256;  // teacher runs that fill the cache

  bool has_hint() const { return !hint_teacher.empty(); }
  /// ConfigError naming the option: temperature <= 0, alpha outside [0, 1], beta < 0, one hint
  /// key without the other, a hint without beta (or beta without a hint), cache_limit_mb < 0,
  /// and every TrainOptions check (epochs < 1, ...).
  void validate() const;
};

/// What a distillation run did, for the model's history and the CLI.
struct DistillReport {
  DistillOptions options;
  std::string teacher_arch, student_arch;
  int64_t teacher_parameters = 0, student_parameters = 0;
  std::string teacher_quant_mode;  // "" for an fp32 teacher
  /// Validation accuracy through the runtime (fractions; -1 without validation data).
  double teacher_val_accuracy = -1;
  double student_val_accuracy_before = -1;  // the student as it came in
  double student_val_accuracy = -1;         // after distillation
  TrainResult train;
  bool logits_cached = false, features_cached = false;
  int64_t cache_bytes = 0;
  double teacher_seconds = 0;  // filling the cache
  std::string hint_adapter;    // "conv1x1", "linear" or "" without a hint
  /// {"stage": "distill", "options": ..., "epochs": [...], "best_epoch", "metrics": ...}.
  std::string to_json() const;
};

/// ModelError when teacher and student cannot be distilled into one another: a different
/// number of classes or a different input shape (the message names both).
void check_compatible(const Model& teacher, const Model& student);

/// Trains `student` in place against `teacher` on `train` (validating on `val`, which may be
/// empty: no restore-best, no early stop). The teacher is not modified and may be a clone of
/// the student (self-distillation) or a quantized or pruned model; the student's pruning masks
/// stay enforced. ConfigError for bad options or a quantized student (distill its fp32
/// original); ModelError for incompatible models; DataError for unusable data.
DistillReport distill_model(Model& student, const Model& teacher, const DistillOptions& options,
                            const Dataset& train, const Dataset& val);

}  // namespace mcompress::distill
