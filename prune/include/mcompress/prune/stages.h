#pragma once
// The pruning module's pipeline stage.

#include "mcompress/core/stage.h"

namespace mcompress::prune {

/// Registers the `prune` stage (magnitude or structured pruning with fine-tuning).
void register_stages(StageRegistry& registry);

}  // namespace mcompress::prune
