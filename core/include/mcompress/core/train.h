#pragma once
// The one training loop: training from scratch, and the fine-tuning that pruning, QAT and
// distillation run, which plug in through TrainHooks.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "mcompress/core/dataset.h"
#include "mcompress/core/model.h"

namespace mcompress {

class TrainableNetwork;

enum class OptimizerKind { kSgd, kAdam };
enum class LrSchedule { kConstant, kStep, kCosine };

std::string to_string(OptimizerKind kind);
OptimizerKind parse_optimizer(const std::string& name);  // ConfigError listing accepted names
std::string to_string(LrSchedule schedule);
LrSchedule parse_lr_schedule(const std::string& name);

/// Example: TrainOptions o; o.epochs = 5; o.lr = 1e-3; o.schedule = LrSchedule::kCosine;
struct TrainOptions {
  int64_t epochs = 10;
  int64_t batch_size = 128;
  OptimizerKind optimizer = OptimizerKind::kAdam;
  double lr = 1e-3;
  double momentum = 0.9;      // SGD only (Nesterov off)
  double weight_decay = 0.0;  // L2, as torch.optim applies it
  LrSchedule schedule = LrSchedule::kCosine;
  int64_t step_size = 3;  // kStep: multiply lr by gamma every step_size epochs
  double gamma = 0.1;
  int64_t early_stop_patience =
      0;                     // stop after this many epochs without a better val accuracy; 0 = off
  bool restore_best = true;  // with a validation set: end with the best-validation weights
  /// With a validation set: the starting weights are validated too and compete as epoch 0, so
  /// that fine-tuning with restore_best never ends worse on validation than it began.
  bool validate_start = false;
  /// Batchnorm layers normalise with their running statistics and stop updating them (as
  /// torch.ao's freeze_bn_stats): fine-tuning then sees the same normalisation the runtime
  /// folds into the weights. QAT sets it.
  bool freeze_batchnorm = false;
  uint64_t seed = 0;     // data order and dropout
  bool progress = true;  // progress bar / per-epoch lines on stderr

  /// ConfigError naming the field for a non-positive epoch count, lr, batch size, ...
  void validate() const;
};

/// What a stage can plug into the loop.
struct TrainHooks {
  /// Loss of a batch from the logits; default is cross-entropy against y.
  std::function<at::Tensor(const at::Tensor& logits, const at::Tensor& x, const at::Tensor& y)>
      loss;
  /// Before every training batch's forward pass, with the rows of the training set it holds
  /// (int64, in batch order), e.g. to look up per-example data such as cached teacher outputs.
  std::function<void(const at::Tensor& indices)> before_batch;
  /// After every optimizer step (e.g. re-apply pruning masks).
  std::function<void(TrainableNetwork& net, int64_t step)> after_step;
  /// After every epoch, before validation.
  std::function<void(TrainableNetwork& net, int64_t epoch)> after_epoch;
};

struct EpochRecord {
  int64_t epoch = 0;  // 1-based
  double lr = 0;
  double train_loss = 0, train_accuracy = 0;
  double val_loss = 0, val_accuracy = 0;  // 0 without a validation set
  double seconds = 0;
};

struct TrainResult {
  std::vector<EpochRecord> epochs;
  int64_t best_epoch = 0;  // the epoch whose weights the model ends with
  bool stopped_early = false;
  double seconds = 0;
  int world_size = 1;  // ranks that trained it (distributed())
  /// Payload bytes this rank all-reduced per optimizer step, averaged over the run (gradients
  /// every step; per-epoch figures and batchnorm statistics spread over the epoch's steps).
  double bytes_all_reduced_per_step = 0;
  /// Wall-clock seconds per step this rank spent in collectives (transfer and waiting).
  double collective_seconds_per_step = 0;
  /// The result as a JSON document for Model::history.
  std::string to_json(const TrainOptions& options) const;
};

/// Trains `net` in place. `val` may be empty (size 0): no validation, no early stop.
/// Data parallel when distributed() has more than one rank: every rank takes its part of each
/// global batch of options.batch_size rows (shard_of over the same seeded epoch order), the
/// gradients are averaged over ranks before every optimizer step, batchnorm running statistics
/// after every epoch, so every rank ends with the same weights; validation is split over ranks
/// too. DistributedError when a peer dies or hangs past the timeout.
TrainResult train(TrainableNetwork& net, const Dataset& train_data, const Dataset& val,
                  const TrainOptions& options, const TrainHooks& hooks = {});

/// Builds the network from `model`, trains it and stores the weights back into `model`.
TrainResult train_model(Model& model, const Dataset& train_data, const Dataset& val,
                        const TrainOptions& options, const TrainHooks& hooks = {});

struct Metrics {
  double accuracy = 0;  // fraction in [0, 1]
  double loss = 0;      // mean cross-entropy
  int64_t samples = 0;
};

/// Accuracy and loss of the training-time network in eval mode.
Metrics evaluate_network(TrainableNetwork& net, const Dataset& data, int64_t batch_size = 512);
/// The same figures with the rows split over distributed()'s ranks and the sums reduced:
/// every rank gets the figures of the whole set. evaluate_network in a world of 1.
Metrics evaluate_sharded(TrainableNetwork& net, const Dataset& data, int64_t batch_size = 512);

}  // namespace mcompress
