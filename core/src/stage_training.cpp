#include "mcompress/core/stage_training.h"

namespace mcompress {

void read_training_options(const StageOptions& o, TrainOptions& t) {
  t.lr = o.number("lr", 1e-8, 10);
  t.batch_size = o.integer("batch_size", 1, 1 << 16);
  t.optimizer = parse_optimizer(o.choice("optimizer", {"adam", "sgd"}));
  t.momentum = o.number("momentum", 0, 1);
  t.weight_decay = o.number("weight_decay", 0, 1);
  t.schedule = parse_lr_schedule(o.choice("lr_schedule", {"constant", "step", "cosine"}));
}

}  // namespace mcompress
