#pragma once
// The training options that every stage which trains (prune's fine-tuning, distillation) reads
// from its recipe mapping under the same keys and bounds: read once, here.

#include "mcompress/core/stage.h"
#include "mcompress/core/train.h"

namespace mcompress {

/// Reads lr, batch_size, optimizer, momentum, weight_decay and lr_schedule from `o` into `t`.
/// Each stage documents these keys in its own OptionDoc rows (defaults and help differ).
void read_training_options(const StageOptions& o, TrainOptions& t);

}  // namespace mcompress
