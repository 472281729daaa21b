#pragma once
// The pruning stage: unstructured magnitude pruning (layer-wise or global threshold) on a
// one-shot, iterative or gradual schedule, or structured filter pruning, each with fine-tuning
// in the shared training loop (masks enforced after every optimizer step).

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "mcompress/core/dataset.h"
#include "mcompress/core/model.h"
#include "mcompress/core/train.h"

namespace mcompress::prune {

enum class PruneMethod { kMagnitude, kStructured };
std::string to_string(PruneMethod method);                // "magnitude", "structured"
PruneMethod parse_prune_method(const std::string& name);  // ConfigError listing the names

enum class PruneScope { kLayer, kGlobal };
std::string to_string(PruneScope scope);  // "layer", "global"
PruneScope parse_prune_scope(const std::string& name);

enum class PruneSchedule { kOneShot, kIterative, kGradual };
std::string to_string(PruneSchedule schedule);  // "one-shot", "iterative", "gradual"
PruneSchedule parse_prune_schedule(const std::string& name);

/// Zhu & Gupta's gradual schedule (see GradualSchedule), in optimizer steps of the fine-tuning.
struct GradualOptions {
  double initial_sparsity = 0;  // s_i, applied at begin_step
  int64_t begin_step = 0;       // t0; 0 = before the first step
  /// t0 + nΔt, where the target is reached; 0 = three quarters of the fine-tuning steps, so the
  /// last quarter recovers at the final sparsity (Zhu & Gupta also fine-tune after pruning ends).
  int64_t end_step = 0;
  int64_t frequency = 100;  // Δt: steps between mask updates
};

/// Example: PruneOptions o; o.scope = PruneScope::kGlobal; o.target = 0.9;
///          o.schedule = PruneSchedule::kIterative; o.rounds = 3;
struct PruneOptions {
  PruneMethod method = PruneMethod::kMagnitude;
  /// magnitude: layer = every tensor to its own target (torch.nn.utils.prune.l1_unstructured,
  /// Zhu & Gupta); global = one magnitude threshold across the tensors (global_unstructured),
  /// which leaves small, sensitive layers denser by itself. structured: layer only (filter
  /// norms of different layers are not comparable).
  PruneScope scope = PruneScope::kLayer;
  /// magnitude: the fraction of the pruned tensors' weights removed (of the pool, for global);
  /// structured: the fraction of each layer's filters / output units removed. In [0, 1).
  double target = 0.5;
  PruneSchedule schedule = PruneSchedule::kOneShot;
  int64_t rounds = 5;  // iterative: rounds of pruning + fine-tuning
  /// iterative: 0 = each round keeps the same fraction (1 − target)^(1/rounds); p > 0 = each
  /// round removes p of the remaining weights (0.2 in the lottery-ticket work), the last round
  /// going to the target. See iterative_sparsities.
  double round_fraction = 0;
  GradualOptions gradual;
  /// Prunable tensors left as they are. Besides tensor names ("0.weight"), "first" and "last"
  /// name the first and the last prunable tensor (the stem conv, the class layer). Default:
  /// none, as torch.nn.utils.prune and Han et al. (all of LeNet-300-100 is pruned); global
  /// scope keeps those small layers denser on its own.
  std::vector<std::string> exclude;
  /// Per-tensor targets (tensor name → fraction in [0, 1)); with global scope such a tensor is
  /// pruned to its own target and leaves the shared pool.
  std::map<std::string, double> overrides;
  /// Fine-tuning epochs after one-shot pruning, after every iterative round, or for the whole
  /// gradual run. 0 = none (gradual needs at least 1).
  int64_t finetune_epochs = 1;
  /// The fine-tuning run except its epoch count (finetune_epochs): the training defaults (Adam
  /// at lr 1e-3, cosine decay within each run, batch 128), quiet. Zhu & Gupta fine-tune with
  /// the original training's schedule; on mlp at 95% (5 rounds of 1 epoch) lr 1e-3 ends 2.2
  /// points above 1e-4 (docs/pruning.md). Gradual pruning turns restore_best and early stopping
  /// off, since an earlier epoch is less sparse.
  TrainOptions finetune = [] {
    TrainOptions t;
    t.progress = false;
    return t;
  }();

  /// ConfigError naming the option for a value outside its range.
  void validate() const;
  /// validate(), and every name in exclude/overrides must be a prunable tensor of `model`;
  /// structured pruning needs a sequential model.
  void validate(const Model& model) const;
};

/// One prunable tensor after pruning.
struct TensorReport {
  std::string name;
  std::vector<int64_t> shape;  // after pruning
  /// magnitude: entries kept by the mask (nonzeros without a mask) / entries; structured:
  /// entries of the smaller tensor / entries of the original one.
  int64_t kept = 0, total = 0;
  /// "global", "layer", "override", "excluded", or "fixed" (structured: a layer whose width
  /// cannot change, such as the classes; it may still lose input channels)
  std::string rule;
  double target = 0;  // its final target (0 when excluded)
  double density() const;
};

/// One round (iterative, one-shot), or one fine-tuning epoch (gradual).
struct RoundReport {
  int64_t round = 0;  // 1-based
  /// scheduled sparsity (structured: fraction of filters removed; gradual: of the epoch's last
  /// mask update)
  double target = 0;
  double sparsity = 0;       // reached: 1 − kept/total over every prunable tensor
  int64_t nonzero = 0;       // nonzero trainable parameters of the model
  double val_accuracy = -1;  // after its fine-tuning; -1 without validation data
};

/// A layer whose width structured pruning changed.
struct WidthChange {
  std::string layer;  // "4 (conv2d)"
  int64_t before = 0, after = 0;
};

struct PruneReport {
  PruneOptions options;
  std::vector<TensorReport> tensors;                    // every prunable tensor, spec order
  int64_t kept = 0, total = 0;                          // summed over the prunable tensors
  double sparsity() const;                              // 1 − kept/total
  int64_t parameters_before = 0, parameters_after = 0;  // trainable parameters of the spec
  int64_t nonzero_before = 0, nonzero_after = 0;        // nonzero trainable parameters
  double val_accuracy_before = -1, val_accuracy_after = -1;
  std::vector<RoundReport> rounds;
  std::vector<WidthChange> widths;      // structured
  std::string spec_before, spec_after;  // structured: the ArchSpec JSON
  std::vector<std::string> notes;       // e.g. layers structured pruning skipped, and why
  bool rewound = false;                 // surviving weights were reset to a rewind model
  double seconds = 0;
  /// The report as a JSON document for Model::history: stage "prune", options, metrics.
  std::string to_json() const;
};

/// Prunes `model` in place and fine-tunes it on `train` (masks enforced, so pruned weights stay
/// zero), scoring every round on `val` when it is not empty. Magnitude pruning leaves the
/// model's shape and sets model.masks; structured pruning replaces the model by a smaller dense
/// one. `rewind_to` (magnitude only): after each pruning step the surviving weights (and every
/// other tensor) are reset to that model's values before fine-tuning, as in the lottery-ticket
/// work: Model::initialize(spec, seed) for the initialisation, or a checkpoint from early in
/// training. The report is returned, not added to model.history: callers append to_json()
/// with their own metrics. ConfigError for bad options or a quantized model.
PruneReport prune_model(Model& model, const PruneOptions& options, const Dataset& train,
                        const Dataset& val, const Model* rewind_to = nullptr);

}  // namespace mcompress::prune
